"""How far mixed-precision maps and scores stray from full-precision ones, and how much faster they come.

The run's classifier explains the same images twice with ``explain_run``, ``precision="full"`` then ``"mixed"``,
into two copies of the run; then, per method, over every image and class:

- normalised maps (each map scaled to [0, 1] by its own minimum and maximum, as the viewer and the boxes do):
  the largest and the mean absolute difference, and the share of maps whose peak cell moved;
- class probabilities: the largest absolute difference, and the images whose decision at 0.5 flipped.

    .venv/bin/python bench/mixed_precision.py --run runs/peopleart-weak-cli --split val [--image-size 448]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from iconolens.data.dataset_json import load_dataset_json
from iconolens.explain.collection import ExplainSettings, explain_run
from iconolens.explain.store import MapStore
from iconolens.run import RunDirectory


def copy_of(run: RunDirectory, where: Path) -> RunDirectory:
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    shutil.copyfile(run.dataset_json, where / "dataset.json")
    shutil.copytree(run.model_dir, where / "model")
    return RunDirectory(where)


def normalised(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return (maps - low) / np.where(span > 0, span, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/peopleart-weak-cli"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--methods", default="cam,gradcam,gradcampp")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("runs/mixed-precision"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    source = RunDirectory(args.run)
    samples = [s for s in load_dataset_json(source.dataset_json).samples if s.split == args.split]
    seconds = {}
    runs = {}
    for precision in ("full", "mixed"):
        runs[precision] = copy_of(source, args.work / precision)
        start = time.perf_counter()
        explain_run(runs[precision], methods, split=args.split,
                    settings=ExplainSettings(image_size=args.image_size, workers=0, device="cpu", precision=precision))
        seconds[precision] = time.perf_counter() - start
    print(f"torch {torch.__version__}, {args.threads} threads, {len(samples)} {args.split} images of {args.run}, "
          f"input {args.image_size or 'as trained'}")
    print(f"explain_run {','.join(methods)}: full {seconds['full']:.1f} s, mixed {seconds['mixed']:.1f} s "
          f"({seconds['full'] / seconds['mixed']:.2f}x)\n")
    print("| method | maps | largest map difference | mean map difference | peak moved | largest probability "
          "difference | decisions flipped at 0.5 |\n|---|---|---|---|---|---|---|")
    for method in methods:
        full, mixed = MapStore(runs["full"].maps_dir(method)), MapStore(runs["mixed"].maps_dir(method))
        largest = total = count = moved = flipped = 0.0
        largest_p = 0.0
        for sample in samples:
            if not full.has(sample.id):
                continue
            (a, pa), (b, pb) = full.read(sample.id), mixed.read(sample.id)
            na, nb = normalised(a.astype(np.float64)), normalised(b.astype(np.float64))
            difference = np.abs(na - nb)
            largest = max(largest, float(difference.max()))
            total += float(difference.mean(axis=(1, 2)).sum())
            count += a.shape[0]
            flat_a, flat_b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
            moved += int((flat_a.argmax(axis=1) != flat_b.argmax(axis=1)).sum())
            largest_p = max(largest_p, float(np.abs(pa - pb).max()))
            flipped += int(((pa >= 0.5) != (pb >= 0.5)).sum())
        print(f"| {method} | {int(count)} | {largest:.4f} | {total / max(count, 1):.5f} | "
              f"{moved / max(count, 1):.2%} | {largest_p:.5f} | {int(flipped)} |")


if __name__ == "__main__":
    main()
