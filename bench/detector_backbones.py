"""Detector backbones compared: speed at 320 px, and how fast each learns a toy task; RoIAlign's two implementations.

For every backbone of ``iconolens detect train --backbone``: seconds per image of inference (batch 8, 320 x 427,
what D-RISE pays per mask), seconds per training iteration (batch 4), and COCO AP on 12 held-out images after
``--iterations`` steps on 24 synthetic images of one bright square each (256 px, sides 32 to 85 px). Then the
RoIAlign forward + backward of one training batch (4 images x 128 RoIs, 256 channels, one 10 x 14 map) with
torchvision's operator and with :class:`iconolens.detect.roi_align.MatrixRoIAlign`, and their largest difference.

    .venv/bin/python bench/detector_backbones.py --iterations 100
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.ops import MultiScaleRoIAlign

from iconolens.data.records import Box, Dataset, Sample
from iconolens.detect.evaluation import evaluate_detector
from iconolens.detect.faster_rcnn import BACKBONES, FasterRCNNDetector, build_faster_rcnn
from iconolens.detect.roi_align import MatrixRoIAlign
from iconolens.detect.training import train_detector


def squares(folder: Path, count: int, size: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        pixels = (rng.random((size, size, 3)) * 60).astype(np.uint8)
        side = int(rng.integers(size // 8, size // 3))
        x, y = (int(v) for v in rng.integers(0, size - side, size=2))
        pixels[y:y + side, x:x + side] = 230
        path = folder / f"s{seed}-{i}.png"
        Image.fromarray(pixels).save(path)
        samples.append(Sample(path.stem, path, ("square",), (Box(x, y, x + side, y + side, "square"),), size, size))
    return Dataset(tuple(samples), ("square",), root=folder)


def timed(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(backbone: str, repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_faster_rcnn(1, backbone)
    detector = FasterRCNNDetector(model, ("person",))
    images = torch.rand(8, 3, 320, 427)
    inference = timed(lambda: detector(images), repeats) / len(images)
    model.train()
    targets = [{"boxes": torch.tensor([[50.0, 60.0, 150.0, 250.0]]), "labels": torch.tensor([1])}] * 4

    def step() -> None:
        model.zero_grad()
        sum(model(list(images[:4]), targets).values()).backward()

    training = timed(step, repeats)
    model.eval()
    return inference, training


def roi_align_speed(repeats: int) -> tuple[float, float, float]:
    generator = torch.Generator().manual_seed(0)
    features = {"0": torch.randn(4, 256, 10, 14, generator=generator, requires_grad=True)}
    corner = torch.rand(4, 128, 2, generator=generator) * torch.tensor([400.0, 280.0])
    size = torch.rand(4, 128, 2, generator=generator) * 200 + 1
    boxes = [torch.cat([c, c + s], 1) for c, s in zip(corner, size)]
    upstream = torch.randn(512, 256, 7, 7, generator=generator)
    shapes = [(320, 447)] * 4
    outputs = []

    def run(pool):
        features["0"].grad = None
        pooled = pool(features, boxes, shapes)
        (pooled * upstream).sum().backward()
        outputs.append(pooled.detach())

    reference = timed(lambda: run(MultiScaleRoIAlign(["0"], 7, 2)), repeats)
    matrix = timed(lambda: run(MatrixRoIAlign(["0"], 7, 2)), repeats)
    return reference, matrix, float((outputs[0] - outputs[-1]).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--clip", nargs="+", type=float, default=[10.0],
                        help="gradient-norm clips to train with (0: none); several give one row each")
    parser.add_argument("--skip-speed", action="store_true", help="only the toy task, not the speed columns")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        train = squares(Path(tmp), 24, 256, seed=0)
        test = squares(Path(tmp), 12, 256, seed=1)
        print("| backbone | gradient clip | inference s/image (batch 8, 320 px) | training s/iteration (batch 4) | "
              f"squares AP@0.5 after {args.iterations} | AP@0.5:0.95 | steps skipped (loss not finite) |")
        print("|---|---|---|---|---|---|---|")
        for backbone in args.backbones:
            inference, training = (math.nan, math.nan) if args.skip_speed else speed(backbone, args.repeats)
            for clip in args.clip:
                model, meta = train_detector(train, iterations=args.iterations, batch_size=4, seed=0, min_size=256,
                                             max_size=256, backbone=backbone, max_grad_norm=clip or None)
                scores, _ = evaluate_detector(FasterRCNNDetector(model, meta.classes), test, min_size=256,
                                              max_size=256)
                print(f"| {backbone} | {clip or 'none'} | {inference:.3f} | {training:.2f} | {scores.ap50:.3f} "
                      f"| {scores.ap:.3f} | {meta.metrics['skipped_steps']} |", flush=True)
    if args.skip_speed:
        return
    reference, matrix, difference = roi_align_speed(args.repeats)
    print(f"\nRoIAlign forward + backward: torchvision {reference:.3f} s, matrix {matrix:.3f} s "
          f"({reference / matrix:.1f}x), largest difference {difference:.1e}")


if __name__ == "__main__":
    main()
