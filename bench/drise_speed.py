"""D-RISE speed: masks per second against the detector's own throughput, and masks the stopping rule needs.

1. Throughput. For each adapter (the built-in Faster R-CNN, MTCNN) and one painting shrunk to ``--size`` px,
   alternate ``--rounds`` times: time the detector alone on a batch of ``--batch-size`` masked copies (images
   made beforehand with the masks ``drise`` draws in that round), then time ``drise`` on them at the same batch
   size (mask generation, masking, detection, scoring and accumulation included). Reported: images/s,
   masks/s and their ratio (target >= 0.9). The rounds are interleaved so that load from other processes
   hits both alike.
2. Convergence. One pass of ``--reference-masks`` masks records the maps every ``--window`` masks; for each
   tolerance, the masks the stopping rule would have used (``stopping_point``) and the Pearson correlation of the
   map at that point with the map after all masks.

Faster R-CNN here is a detector trained by ``iconolens detect train`` when ``--model`` names one, else the
``--backbone`` architecture with the shipped ImageNet trunk and an untrained head (its detections are noise, so the
convergence part then uses MTCNN's real face detections unless ``--convergence frcnn`` is given).

    .venv/bin/python bench/drise_speed.py --size 320 --batch-size 16 --rounds 3 --reference-masks 1000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from iconolens.data.images import load_image
from iconolens.detect.evaluation import image_tensor
from iconolens.detect.checkpoint import load_detector
from iconolens.detect.faster_rcnn import BACKBONES, FasterRCNNDetector, build_faster_rcnn
from iconolens.detect.mtcnn import MTCNNDetector
from iconolens.explain.drise import drise, generate_masks, stopping_point

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared/data/peopleart/JPEGImages/Academicism/albert-anker_b-ckligumpen-1866.jpg"


def throughput(name, detector, image, batch_size, rounds, grid, keep):
    targets = detector(image[None])[0]
    if len(targets) == 0:
        raise SystemExit(f"{name}: no detection in the benchmark image to explain")
    detector(image[None].expand(batch_size, -1, -1, -1).contiguous())  # warm-up
    plain, explained = [], []
    for r in range(rounds):
        # the very masks drise draws in this round: a detector's cost can depend on what the image shows
        masks = generate_masks(0, batch_size, tuple(image.shape[1:]), grid, keep, seed=r)
        batch = (image[None] * masks[:, None]).contiguous()
        start = time.perf_counter()
        detector(batch)
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        drise(detector, image, targets, n_masks=batch_size, grid=grid, keep=keep, batch_size=batch_size, seed=r)
        explained.append(time.perf_counter() - start)
    detector_rate = batch_size * rounds / sum(plain)
    drise_rate = batch_size * rounds / sum(explained)
    return {
        "adapter": name, "targets": len(targets), "batch_size": batch_size, "rounds": rounds,
        "detector_images_per_s": round(detector_rate, 3), "drise_masks_per_s": round(drise_rate, 3),
        "ratio": round(drise_rate / detector_rate, 3),
        "detector_seconds": [round(t, 3) for t in plain], "drise_seconds": [round(t, 3) for t in explained],
    }


def convergence(name, detector, image, n_masks, window, batch_size, grid, keep, tolerances):
    history = []
    start = time.perf_counter()
    result = drise(detector, image, None, n_masks=n_masks, grid=grid, keep=keep, batch_size=batch_size, seed=0,
                   window=window, on_window=lambda used, maps: history.append((used, maps.clone())))
    elapsed = time.perf_counter() - start
    final = result.maps.flatten(1).numpy()
    maps = dict(history)
    rows = []
    for tolerance in tolerances:
        used = stopping_point(history, tolerance)
        if used is None:
            rows.append({"tolerance": tolerance, "masks": None})
            continue
        early = maps[used].flatten(1).numpy()
        corr = [float(np.corrcoef(a, b)[0, 1]) for a, b in zip(early, final)]
        rows.append({"tolerance": tolerance, "masks": used, "min_correlation": round(min(corr), 4)})
    # the fewest masks whose maps already correlate >= 0.99 with the final ones, whatever the rule says
    enough = next((used for used, m in history
                   if min(np.corrcoef(a, b)[0, 1] for a, b in zip(m.flatten(1).numpy(), final)) >= 0.99), None)
    return {"adapter": name, "targets": len(result.targets), "reference_masks": n_masks, "window": window,
            "seconds": round(elapsed, 1), "masks_without_detections": result.masks_without_detections,
            "stopping_rule": rows, "fewest_masks_at_correlation_0.99": enough}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--size", type=int, default=320, help="longest image side in pixels")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--grid", type=int, default=16)
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--reference-masks", type=int, default=5000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--convergence", choices=("mtcnn", "frcnn", "none"), default="mtcnn")
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.05, 0.02, 0.01, 0.005, 0.002])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbone", default="mobilenet_v2_fpn", choices=BACKBONES)
    parser.add_argument("--model", type=Path, default=None, help="a trained detector folder instead of --backbone")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image, _ = image_tensor(load_image(args.image), args.size, args.size)
    torch.manual_seed(0)
    detectors = {
        "frcnn": (load_detector(args.model)[0] if args.model else
                  FasterRCNNDetector(build_faster_rcnn(1, args.backbone, min_size=args.size, max_size=args.size),
                                     ("person",))),
        "mtcnn": MTCNNDetector(),
    }
    report = {"image": str(args.image), "size": list(image.shape[1:]), "threads": args.threads, "throughput": []}
    for name, detector in detectors.items():
        row = throughput(name, detector, image, args.batch_size, args.rounds, args.grid, args.keep)
        print(json.dumps(row), flush=True)
        report["throughput"].append(row)
    if args.convergence != "none":
        row = convergence(args.convergence, detectors[args.convergence], image, args.reference_masks, args.window,
                          args.batch_size, args.grid, args.keep, args.tolerances)
        print(json.dumps(row), flush=True)
        report["convergence"] = row
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
