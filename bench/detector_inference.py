"""A trained detector as loaded for inference (frozen batch norms folded, channels-last) against the same weights
as built for training, on the same paintings: seconds, and how far the detections moved.

    .venv/bin/python bench/detector_inference.py --model RUN/weak/round-0/detector --images 100
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torchvision.transforms.functional as F

from iconolens.data.images import load_image
from iconolens.detect.checkpoint import WEIGHTS, load_detector
from iconolens.detect.faster_rcnn import FasterRCNNDetector, build_faster_rcnn

PEOPLEART = Path(__file__).resolve().parents[2] / "shared" / "data" / "peopleart" / "JPEGImages"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prepared, meta = load_detector(args.model)
    plain = build_faster_rcnn(len(meta.classes), meta.backbone, backbone_weights=False, min_size=meta.min_size,
                              max_size=meta.max_size)
    plain.load_state_dict(torch.load(args.model / WEIGHTS, map_location="cpu", weights_only=True))
    detectors = {"as built for training": FasterRCNNDetector(plain, meta.classes), "as loaded": prepared}
    files = sorted(PEOPLEART.rglob("*.jpg"))[: args.images]
    images = [F.to_tensor(load_image(path).convert("RGB"))[None] for path in files]
    for detector in detectors.values():
        detector(images[0])  # warm-up
    seconds, found = {}, {}
    for name, detector in detectors.items():
        start = time.perf_counter()
        found[name] = [detector(image)[0] for image in images]
        seconds[name] = time.perf_counter() - start
    same_count = box_moved = score_moved = 0.0
    for a, b in zip(*found.values()):
        if len(a.scores) == len(b.scores):
            same_count += 1
            if len(a.scores):
                box_moved = max(box_moved, float((a.boxes - b.boxes).abs().max()))
                score_moved = max(score_moved, float((a.scores - b.scores).abs().max()))
    print(f"torch {torch.__version__}, {args.threads} threads, {len(images)} People-Art paintings, {meta.backbone}, "
          f"min/max size {meta.min_size}/{meta.max_size}")
    print("| detector | seconds | images/s |\n|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.1f} | {len(images) / value:.2f} |")
    base = seconds["as built for training"]
    print(f"\n{base / seconds['as loaded']:.2f}x faster; the same number of detections on {int(same_count)} of "
          f"{len(images)} paintings; on those, boxes moved by at most {box_moved:.2e} px and scores by {score_moved:.2e}")


if __name__ == "__main__":
    main()
