"""D-RISE on People-Art person detections: pointing game, deletion and insertion, against chance baselines.

A detector trained by ``iconolens detect train`` (e.g. by ``bench/peopleart_detect.py``) runs on the first
``--images`` val paintings where it finds a person with score >= ``--min-score``; every such detection is
explained with D-RISE (``--masks`` masks, grid 16, keep 0.5, seed 0) in one pass per painting. Measured per
detection:

- pointing game against the detection's own box, and against the expert box it matches (IoU >= 0.5), if any;
  chance level is the share of the image the box covers (a peak at a uniformly random pixel);
- deletion and insertion areas (similarity of the best-matching detection as the top pixels are blurred away
  or restored; kernel 51, sigma 50, ``--steps`` steps) for the D-RISE map and for two random maps (seeded):
  per-pixel uniform noise, and smooth noise (an 8 x 8 grid of uniform values upsampled bilinearly), which
  removes and restores coherent regions as a saliency map does.

The average saliency map over all detections (each map cropped to its box, resized, normalised) is written
as a PNG to ``--out``.

    .venv/bin/python bench/peopleart_drise.py --model runs/peopleart-detect/mobilenet_v2_fpn-expert --images 8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import box_iou

from iconolens.data.collections import load_collection
from iconolens.data.images import load_image
from iconolens.detect.checkpoint import load_detector
from iconolens.detect.evaluation import image_tensor
from iconolens.detect.measures import average_saliency, detection_perturbation_curves, pointing_game
from iconolens.explain.drise import drise

PEOPLEART = Path(__file__).resolve().parents[2] / "shared" / "data" / "peopleart"


def smooth_noise(shape: tuple[int, int], rng: np.random.Generator, cells: int = 8) -> np.ndarray:
    coarse = torch.from_numpy(rng.random((1, 1, cells, cells)).astype(np.float32))
    return F.interpolate(coarse, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--peopleart", type=Path, default=PEOPLEART)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--masks", type=int, default=1000)
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/out/peopleart-drise"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector, meta = load_detector(args.model, min_score=args.min_score)
    val = load_collection(args.peopleart).subset("val")
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, maps, boxes = [], [], []
    start = time.perf_counter()
    explained = 0
    for sample in val.samples:
        if explained == args.images:
            break
        image, scale = image_tensor(load_image(sample.path), meta.min_size, meta.max_size)
        targets = detector(image[None])[0]
        truth = [tuple(v * scale for v in b.xyxy) for b in sample.boxes]
        if len(targets) == 0 or not truth:
            continue
        explained += 1
        result = drise(detector, image, targets, n_masks=args.masks, batch_size=16, seed=0)
        height, width = image.shape[1:]
        for k in range(len(targets)):
            box = targets.boxes[k].tolist()
            saliency = result.maps[k].numpy()
            overlaps = box_iou(targets.boxes[k:k + 1], torch.tensor(truth))[0]
            matched = truth[int(overlaps.argmax())] if float(overlaps.max()) >= 0.5 else None
            one = targets.select([k])
            curves = detection_perturbation_curves(detector, image, saliency, one, steps=args.steps)
            noise = rng.random(saliency.shape).astype(np.float32)
            chance = detection_perturbation_curves(detector, image, noise, one, steps=args.steps)
            smooth = detection_perturbation_curves(detector, image, smooth_noise(saliency.shape, rng), one,
                                                   steps=args.steps)
            rows.append({
                "image": sample.id, "score": round(float(targets.scores[k]), 3),
                "box_share": (box[2] - box[0]) * (box[3] - box[1]) / (height * width),
                "hit_own_box": pointing_game(saliency, box),
                "hit_expert_box": None if matched is None else pointing_game(saliency, matched),
                "deletion": curves.deletion_auc, "insertion": curves.insertion_auc,
                "random_deletion": chance.deletion_auc, "random_insertion": chance.insertion_auc,
                "smooth_deletion": smooth.deletion_auc, "smooth_insertion": smooth.insertion_auc,
            })
            maps.append(saliency)
            boxes.append(box)
        print(f"{sample.id}: {len(targets)} detections, {result.summary()}", flush=True)
    seconds = time.perf_counter() - start
    (args.out / "detections.json").write_text(json.dumps(rows, indent=1) + "\n")
    average = average_saliency(maps, boxes, size=(96, 64))
    Image.fromarray((average * 255).astype(np.uint8)).resize((128, 192), Image.Resampling.NEAREST).save(
        args.out / "average_saliency.png")
    matched_rows = [r for r in rows if r["hit_expert_box"] is not None]
    mean = lambda key, items=rows: float(np.mean([r[key] for r in items]))  # noqa: E731
    print(f"\n{explained} paintings, {len(rows)} detections (score >= {args.min_score}), {args.masks} masks each, "
          f"{seconds:.0f} s")
    print("| measure | D-RISE | chance: per-pixel noise | chance: smooth noise |")
    print("|---|---|---|---|")
    print(f"| pointing game, own box | {mean('hit_own_box'):.3f} | {mean('box_share'):.3f} | |")
    if matched_rows:
        print(f"| pointing game, matched expert box ({len(matched_rows)} detections) | "
              f"{mean('hit_expert_box', matched_rows):.3f} | {mean('box_share', matched_rows):.3f} | |")
    for name in ("deletion", "insertion"):
        better = "lower" if name == "deletion" else "higher"
        print(f"| {name} area ({better} is better) | {mean(name):.3f} | {mean('random_' + name):.3f} "
              f"| {mean('smooth_' + name):.3f} |")


if __name__ == "__main__":
    main()
