"""Weakly supervised detection on People-Art: a detector trained on boxes derived from CAMs vs on expert boxes.

Pipeline (no expert box is used on the weakly supervised side):

1. The collection (People-Art's own train/val lists) is written as a run's ``dataset.json``.
2. ``iconolens train`` fits a person-presence classifier (image labels only), ``iconolens explain`` computes its
   CAMs on the train split, ``iconolens boxes --no-gate`` turns them into COCO detections (pseudo boxes).
3. ``iconolens.detect`` trains one Faster R-CNN on the train split's expert person boxes and one on the pseudo
   boxes, same seed and schedule, and scores both with COCO AP on the val split.

    .venv/bin/python bench/peopleart_detect.py --work runs/peopleart-detect --iterations 300

Steps whose output already exists are skipped, so an interrupted run resumes. ``--pseudo-boxes FILE`` skips
step 2 and uses boxes written elsewhere.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from iconolens.data.collections import load_collection
from iconolens.data.dataset_json import save_dataset_json
from iconolens.detect.checkpoint import load_detector, save_detector
from iconolens.detect.evaluation import evaluate_detector
from iconolens.detect.training import read_coco_detections, train_detector, with_pseudo_boxes
from iconolens.run import RunDirectory

PEOPLEART = Path(__file__).resolve().parents[2] / "shared" / "data" / "peopleart"
CLI = [sys.executable, "-m", "iconolens"]


def run_cli(*args: str) -> None:
    print("$ iconolens " + " ".join(args), flush=True)
    subprocess.run([*CLI, *args], check=True)


def pseudo_boxes(run: RunDirectory, args: argparse.Namespace) -> Path:
    boxes = run.boxes_dir / "cam_figure_detections.json"
    if boxes.is_file():
        return boxes
    if not (run.model_dir / "meta.json").is_file():
        run_cli("train", "--run", str(run.root), "--backbone", "mobilenet_v2", "--mode", "off-the-shelf",
                "--epochs", str(args.classifier_epochs), "--image-size", "224", "--threads", str(args.threads))
    if not run.maps_dir("cam").is_dir():
        run_cli("explain", "--run", str(run.root), "--methods", "cam", "--split", "train")
    run_cli("boxes", "--run", str(run.root), "--method", "cam", "--no-gate", "--split", "train")
    return boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peopleart", type=Path, default=PEOPLEART)
    parser.add_argument("--work", type=Path, default=Path("runs/peopleart-detect"))
    parser.add_argument("--pseudo-boxes", type=Path, default=None)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--min-size", type=int, default=320)
    parser.add_argument("--max-size", type=int, default=480)
    parser.add_argument("--classifier-epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = RunDirectory(args.work / "run")
    dataset = load_collection(args.peopleart)
    if not run.dataset_json.is_file():
        save_dataset_json(dataset, run.dataset_json)
    train, val = dataset.subset("train"), dataset.subset("val")
    boxes_file = args.pseudo_boxes or pseudo_boxes(run, args)
    pseudo = with_pseudo_boxes(train, read_coco_detections(boxes_file), boxes_file)
    sources = {"expert boxes": train, "CAM boxes": pseudo}
    results = {}
    for name, data in sources.items():
        model_dir = args.work / ("detector-" + name.split()[0].lower())
        start = time.perf_counter()
        if not (model_dir / "detector.json").is_file():
            model, meta = train_detector(data, classes=("person",), iterations=args.iterations,
                                         batch_size=args.batch_size, seed=0, min_size=args.min_size,
                                         max_size=args.max_size)
            save_detector(model_dir, model, meta)
        trained = time.perf_counter() - start
        detector, meta = load_detector(model_dir)
        scores, _ = evaluate_detector(detector, val, min_size=meta.min_size, max_size=meta.max_size)
        results[name] = {
            "training_boxes": sum(len(s.boxes) for s in data.samples),
            "training_images_with_boxes": sum(1 for s in data.samples if s.boxes),
            "train_seconds": round(trained, 1), **scores.to_json(),
        }
        print(json.dumps({name: results[name]}), flush=True)
    (args.work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
