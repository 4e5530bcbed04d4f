"""Person detectors on People-Art: trunks compared on expert boxes, and boxes derived from CAMs vs expert boxes.

Each arm is ``BACKBONE:SOURCE``: a detector backbone (see ``iconolens detect train --help``) and the boxes it is
trained on, ``expert`` (People-Art's person boxes) or ``cam`` (boxes derived from the CAMs of a person-presence
classifier trained on image labels only: no expert box is used on that side). Every arm trains on the train
split with the same seed and schedule and is scored with COCO AP on the val split (difficult boxes ignored, as
People-Art's VOC protocol has it, and also counted like the others).

Pseudo boxes: the collection is written as a run's ``dataset.json``; ``iconolens train`` fits the classifier,
``iconolens explain`` computes its CAMs on the train split, ``iconolens boxes --no-gate`` turns them into COCO
detections (at each map's ``--percentile``, or the thesis's fixed threshold with ``--percentile 0``).

    .venv/bin/python bench/peopleart_detect.py --work runs/peopleart-detect --iterations 600 \\
        --arm mobilenet_v2:expert --arm mobilenet_v2_fpn:expert --arm mobilenet_v2_fpn:cam

Arms already trained or scored are not redone, so several processes can share one ``--work`` folder (one arm
each) and an interrupted run resumes. The table of every arm scored so far is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from iconolens.data.collections import load_collection
from iconolens.data.dataset_json import save_dataset_json
from iconolens.detect.checkpoint import load_detector, save_detector
from iconolens.detect.evaluation import coco_average_precision, evaluate_detector
from iconolens.detect.faster_rcnn import BACKBONES
from iconolens.detect.training import read_coco_detections, train_detector, with_pseudo_boxes
from iconolens.run import RunDirectory

PEOPLEART = Path(__file__).resolve().parents[2] / "shared" / "data" / "peopleart"
CLI = [sys.executable, "-m", "iconolens"]
SOURCES = ("expert", "cam")


def run_cli(*args: str) -> None:
    print("$ iconolens " + " ".join(args), flush=True)
    subprocess.run([*CLI, *args], check=True)


def pseudo_boxes(work: Path, run: RunDirectory, args: argparse.Namespace) -> Path:
    """COCO detections derived from the classifier's CAMs on the train split (made once per recipe)."""
    recipe = f"p{args.percentile:g}" if args.percentile > 0 else "thesis"
    kept = work / f"cam-boxes-{recipe}.json"
    if kept.is_file():
        return kept
    if not (run.model_dir / "meta.json").is_file():
        run_cli("train", "--run", str(run.root), "--backbone", "mobilenet_v2", "--mode", "off-the-shelf",
                "--epochs", str(args.classifier_epochs), "--image-size", "224", "--threads", str(args.threads))
    if not run.maps_dir("cam").is_dir():
        run_cli("explain", "--run", str(run.root), "--methods", "cam", "--split", "train")
    threshold = ["--percentile", f"{args.percentile:g}"] if args.percentile > 0 else []
    run_cli("boxes", "--run", str(run.root), "--method", "cam", "--no-gate", "--split", "train", *threshold)
    shutil.copyfile(run.boxes_dir / "cam_figure_detections.json", kept)
    return kept


def parse_arm(text: str) -> tuple[str, str]:
    backbone, _, source = text.partition(":")
    if backbone not in BACKBONES or source not in SOURCES:
        raise SystemExit(f"--arm {text!r}: expected BACKBONE:SOURCE with BACKBONE in {', '.join(BACKBONES)} "
                         f"and SOURCE in {', '.join(SOURCES)}")
    return backbone, source


def print_table(work: Path) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(work.glob("*/scores.json"))]
    print("| backbone | training boxes | boxes | iterations (batch) | training time | AP@0.5 on val | AP@0.5:0.95 "
          "| the same, difficult boxes counted |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']} | {r['source']} | {r['training_boxes']} | {r['iterations']} ({r['batch_size']}) "
              f"| {r['train_seconds']:.0f} s | {r['AP50']:.3f} | {r['AP50:95']:.3f} "
              f"| {r['AP50_difficult_counted']:.3f} / {r['AP50:95_difficult_counted']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peopleart", type=Path, default=PEOPLEART)
    parser.add_argument("--work", type=Path, default=Path("runs/peopleart-detect"))
    parser.add_argument("--arm", action="append", type=parse_arm, default=None,
                        help="BACKBONE:SOURCE, repeatable (default mobilenet_v2_fpn:expert and mobilenet_v2_fpn:cam)")
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--min-size", type=int, default=320)
    parser.add_argument("--max-size", type=int, default=480)
    parser.add_argument("--percentile", type=float, default=70.0,
                        help="CAM boxes at each map's percentile (0: the thesis's fixed threshold)")
    parser.add_argument("--classifier-epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    arms = args.arm or [("mobilenet_v2_fpn", "expert"), ("mobilenet_v2_fpn", "cam")]
    torch.set_num_threads(args.threads)
    run = RunDirectory(args.work / "run")
    dataset = load_collection(args.peopleart)
    if not run.dataset_json.is_file():
        save_dataset_json(dataset, run.dataset_json)
    train, val = dataset.subset("train"), dataset.subset("val")
    for backbone, source in arms:
        data = train
        if source == "cam":
            boxes_file = pseudo_boxes(args.work, run, args)
            data = with_pseudo_boxes(train, read_coco_detections(boxes_file), boxes_file)
            source = boxes_file.stem
        arm_dir = args.work / f"{backbone}-{source}"
        if (arm_dir / "scores.json").is_file():
            continue
        start = time.perf_counter()
        if not (arm_dir / "detector.json").is_file():
            model, meta = train_detector(data, classes=("person",), iterations=args.iterations,
                                         batch_size=args.batch_size, seed=0, min_size=args.min_size,
                                         max_size=args.max_size, backbone=backbone)
            meta.metrics["train_seconds"] = round(time.perf_counter() - start, 1)
            save_detector(arm_dir, model, meta)
        detector, meta = load_detector(arm_dir)
        scores, predictions = evaluate_detector(detector, val, min_size=meta.min_size, max_size=meta.max_size)
        strict = coco_average_precision([s.boxes for s in val.samples], predictions, ("person",),
                                        ignore_difficult=False)
        result = {
            "backbone": backbone, "source": source, "iterations": meta.metrics["iterations"],
            "batch_size": args.batch_size, "train_seconds": meta.metrics.get("train_seconds", float("nan")),
            "training_boxes": sum(len(s.boxes) for s in data.samples),
            "training_images_with_boxes": sum(1 for s in data.samples if s.boxes), **scores.to_json(),
            "AP50_difficult_counted": round(strict.ap50, 6), "AP50:95_difficult_counted": round(strict.ap, 6),
        }
        (arm_dir / "scores.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result), flush=True)
    print_table(args.work)


if __name__ == "__main__":
    main()
