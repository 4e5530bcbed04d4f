"""D-RISE of many paintings: the in-process engine against the Ray engine on the same machine, in one run.

``--images`` paintings (People-Art's val JPEGs by default) are explained with D-RISE (``--masks`` masks each, all
detections above ``--min-score`` as targets) by a trained detector: first in this process with ``--threads``
torch threads, then by ``explain_images_on_ray`` with ``--ray`` actors (one CPU and one thread each; starting
Ray and the actors included in its time). The script checks that both wrote the same maps and prints the
ratio of their throughputs.

    .venv/bin/python bench/drise_engines.py --model RUN/weak/round-0/detector --images 8 --masks 500
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from iconolens.detect.explanations import DriseSettings, explain_images
from iconolens.detect.ray_engine import explain_images_on_ray
from iconolens.detect.source import DetectorSource

PEOPLEART = Path(__file__).resolve().parents[2] / "shared" / "data" / "peopleart"


def val_images(root: Path, count: int) -> list[Path]:
    """The first ``count`` People-Art val paintings with people (``Annotations/person_val.txt``)."""
    lines = (root / "Annotations" / "person_val.txt").read_text().splitlines()
    return [root / "JPEGImages" / line.split()[0] for line in lines if line.split()[-1] == "1"][:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="detector folder (iconolens detect train)")
    parser.add_argument("--peopleart", type=Path, default=PEOPLEART)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--masks", type=int, default=500)
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ray", type=int, default=2, help="Ray actors")
    args = parser.parse_args()
    images = val_images(args.peopleart, args.images)
    settings = DriseSettings(n_masks=args.masks, batch_size=16)
    source = DetectorSource(args.model)
    work = Path(tempfile.mkdtemp(prefix="drise-engines-"))
    try:
        torch.set_num_threads(args.threads)
        detector, min_size, max_size = source.open()
        start = time.perf_counter()
        local = explain_images(detector, images, work / "inprocess", settings, min_score=args.min_score,
                               min_size=min_size, max_size=max_size)
        inprocess = time.perf_counter() - start
        start = time.perf_counter()
        remote = explain_images_on_ray(source, images, work / "ray", settings, min_score=args.min_score,
                                       workers=args.ray)
        on_ray = time.perf_counter() - start
        targets = sum(len(r["targets"]) for r in local)
        same_targets = [len(r["targets"]) for r in local] == [len(r["targets"]) for r in remote]
        differences = [float(np.abs(np.load(work / "inprocess" / p.stem / "maps.npy").astype(np.float32)
                                    - np.load(work / "ray" / p.stem / "maps.npy").astype(np.float32)).max(initial=0))
                       for p in images]
        print(f"{len(images)} paintings, {targets} targets, {args.masks} masks each")
        print(f"| in process, {args.threads} threads | {inprocess:.1f} s | {len(images) / inprocess:.3f} images/s |")
        print(f"| Ray, {args.ray} actors of 1 thread (start included) | {on_ray:.1f} s | "
              f"{len(images) / on_ray:.3f} images/s |")
        print(f"Ray / in process throughput: {inprocess / on_ray:.2f}x; same targets: {same_targets}; "
              f"largest map difference {max(differences):.2e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
