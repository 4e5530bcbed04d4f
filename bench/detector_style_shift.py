"""Detectors on a split as painted and under a shift of style: the same paintings in grey, and faded.

A detector is run on collections it never saw: other palettes, prints and drawings, photographs of faded
canvases. This scores each given detector on the same paintings three ways (one view, COCO AP@0.5 with
difficult boxes ignored): as painted; in grey (PIL's "L" conversion); faded (half the contrast, half the
saturation, then a warm cast: green x 0.95, blue x 0.8). The shifted copies are written once under ``--work``.

    .venv/bin/python bench/detector_style_shift.py --run runs/pa-seed0 --split val --work runs/style-shift \\
        --detector runs/pa-seed0/weak/round-0/detector --detector OTHER_DETECTOR
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from PIL import Image, ImageEnhance

from iconolens.data.dataset_json import load_dataset_json
from iconolens.data.images import load_image
from iconolens.data.records import Dataset
from iconolens.detect.checkpoint import load_detector
from iconolens.detect.evaluation import coco_average_precision, detect_collection


def grey(image: Image.Image) -> Image.Image:
    return image.convert("L").convert("RGB")


def faded(image: Image.Image) -> Image.Image:
    image = ImageEnhance.Color(ImageEnhance.Contrast(image).enhance(0.5)).enhance(0.5)
    r, g, b = image.split()
    return Image.merge("RGB", (r, g.point(lambda v: v * 0.95), b.point(lambda v: v * 0.8)))


def shifted(dataset: Dataset, change, folder: Path) -> Dataset:
    """``dataset`` with every image replaced by its changed copy in ``folder`` (made when missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for sample in dataset.samples:
        target = folder / f"{sample.id.replace('/', '_')}.png"
        if not target.is_file():
            partial = target.with_suffix(".part.png")
            change(load_image(sample.path)).save(partial)
            partial.replace(target)
        samples.append(dataclasses.replace(sample, path=target))
    return dataset.with_samples(tuple(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder whose dataset.json has expert boxes")
    parser.add_argument("--split", default="val")
    parser.add_argument("--work", type=Path, required=True, help="where the shifted copies are written")
    parser.add_argument("--detector", type=Path, action="append", required=True, help="a detector folder (repeat)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_dataset_json(args.run / "dataset.json").subset(args.split)
    views = {"as painted": dataset, "grey": shifted(dataset, grey, args.work / "grey"),
             "faded": shifted(dataset, faded, args.work / "faded")}
    truth = [[b for b in s.boxes if b.level == "figure"] for s in dataset.samples]
    print("| detector | " + " | ".join(views) + " |")
    print("|---|" + "---|" * len(views))
    for folder in args.detector:
        detector, meta = load_detector(folder)
        scores = []
        for view in views.values():
            found, _ = detect_collection(detector, view, meta.min_size, meta.max_size)
            scores.append(coco_average_precision(truth, found, meta.classes).ap50)
        print(f"| {folder} | " + " | ".join(f"{s:.3f}" for s in scores) + " |", flush=True)


if __name__ == "__main__":
    main()
