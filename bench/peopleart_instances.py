"""Every person in the painting: pseudo boxes from image labels, and the detectors that learn from them.

On People-Art (train split for everything weak, val split for the detectors' scores), with no expert box used
anywhere on the weak side: expert boxes only score what each stage produced. One row per box source:

* ``one-box-224``: today's recipe, one box around each CAM's foreground (70th percentile), CAM at 224 px;
* ``one-box-448``: the same on finer maps (CAM at 448 px, 14 x 14);
* ``instances-448``: several boxes per map, peaks grown into regions (``iconolens boxes --instances``);
* ``segments-448``: boxes snapped to the regions GrabCut cuts out of the painting, seeded by the map
  (``iconolens boxes --segments``);
* ``layercam-fused-one-box-448``, ``layercam-fused-instances-448``: the same two recipes on LayerCAM maps fused
  over the stride 8, 16 and 32 stages (56 x 56 at 448 px) instead of CAM's 14 x 14;
* ``faces-canon-448``: one figure box per face MTCNN finds (the canon's proportions), the one-box-448 box where
  it finds none; ``faces-448``: the same with each figure cut out of the painting by GrabCut around its face
  (``iconolens detect weak --source faces``);
* ``mil``: multiple-instance learning over proposals without refinement (WSDDN), and ``mil-refined`` with
  online refinement (``iconolens mil``);
* each chain's self-training rounds (``iconolens detect weak``).

For each: pseudo-box mAP@0.5 (difficult ignored and counted), CorLoc, recall of expert boxes at IoU 0.5, boxes
per image and average IoU on the train split, and the wall time of the stage; for the chains given with
``--chain``, the detector trained on them and every self-training round scored on val (AP@0.5, AP@0.5:0.95),
beside the detector trained on the expert boxes with the same schedule (``--expert``).

    .venv/bin/python bench/peopleart_instances.py --work runs/peopleart-instances \\
        --chain instances-448 --expert --rounds 1

Everything already computed under ``--work`` is reused (a run resumes); the table is printed at the end and
written to WORK/table.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch

from iconolens.data.collections import load_collection
from iconolens.data.dataset_json import save_dataset_json
from iconolens.detect.weak import WeakDetectionPlan, first_pseudo_boxes, weakly_supervised_detector
from iconolens.evaluate.detection import evaluate_derived_boxes
from iconolens.explain.collection import ExplainSettings, explain_run
from iconolens.models.training import TrainingConfig, train_classifier
from iconolens.run import RunDirectory

PEOPLEART = Path(__file__).resolve().parents[2] / "shared" / "data" / "peopleart"

#: box source name -> (the chain's source, input size of the maps (0: no maps), saliency method)
SOURCES = {
    "one-box-224": ("one-box", 224, "cam"),
    "one-box-448": ("one-box", 448, "cam"),
    "instances-448": ("instances", 448, "cam"),
    "segments-448": ("segments", 448, "cam"),
    "faces-canon-448": ("faces", 448, "cam"),
    "faces-448": ("faces", 448, "cam"),
    "mil": ("mil", 0, ""),
    "mil-refined": ("mil", 0, ""),
    "layercam-fused-one-box-448": ("one-box", 448, "layercam_fused"),
    "layercam-fused-instances-448": ("instances", 448, "layercam_fused"),
}


def plan_for(name: str, args: argparse.Namespace) -> WeakDetectionPlan:
    source, size, method = SOURCES[name]
    return WeakDetectionPlan(source=source, method=method or "cam", map_size=size or 448, iterations=args.iterations,
                             round_iterations=args.round_iterations, rounds=args.rounds, evaluate_split="val",
                             folder=f"weak-{name}" + ("-incomplete" if args.incomplete_boxes else "")
                             + ("-relabel-alone" if args.relabel_alone else ""),
                             max_size=args.max_size, backbone=args.backbone, complete_boxes=not args.incomplete_boxes,
                             figure_cut=name != "faces-canon-448", keep_face_figures=not args.relabel_alone)


def run_at(work: Path, size: int) -> RunDirectory:
    """A run sharing the classifier of WORK/run, whose maps are computed at ``size`` px."""
    base, run = RunDirectory(work / "run"), RunDirectory(work / f"run-{size}")
    run.root.mkdir(parents=True, exist_ok=True)
    if not run.dataset_json.is_file():
        shutil.copyfile(base.dataset_json, run.dataset_json)
    if not run.model_dir.exists():
        os.symlink(base.model_dir.resolve(), run.model_dir)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peopleart", type=Path, default=PEOPLEART)
    parser.add_argument("--work", type=Path, default=Path("runs/peopleart-instances"))
    parser.add_argument("--sources", default=",".join(SOURCES), help="box sources to score on train")
    parser.add_argument("--chain", action="append", default=[], help="box source whose detector chain to run")
    parser.add_argument("--expert", action="store_true", help="also train the detector on the expert boxes")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--round-iterations", type=int, default=300)
    parser.add_argument("--max-size", type=int, default=480)
    parser.add_argument("--backbone", default="mobilenet_v2_fpn")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--incomplete-boxes", action="store_true",
                        help="train the chains' detectors with background only from paintings without boxes")
    parser.add_argument("--relabel-alone", action="store_true",
                        help="self-training rounds of the faces chains do not keep the face figures")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work: Path = args.work
    run = RunDirectory(work / "run")
    if not run.dataset_json.is_file():
        save_dataset_json(load_collection(args.peopleart), run.dataset_json)
    from iconolens.data.dataset_json import load_dataset_json

    dataset = load_dataset_json(run.dataset_json)
    train = dataset.subset("train")
    timings_path = work / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}

    def timed(key: str, work_fn) -> None:
        if key in timings:
            return
        start = time.perf_counter()
        work_fn()
        timings[key] = round(time.perf_counter() - start, 1)
        timings_path.write_text(json.dumps(timings, indent=2))

    timed("classifier", lambda: (run.model_dir / "meta.json").is_file() or train_classifier(
        dataset, TrainingConfig(backbone="mobilenet_v2", mode="off-the-shelf", image_size=224, epochs=10),
        run.root, source=run.dataset_json))
    rows = []
    for name in [s for s in args.sources.split(",") if s]:
        source, size, method = SOURCES[name]
        plan = plan_for(name, args)
        at = run_at(work, size) if size else run
        if size:
            key = f"maps-{size}" if method == "cam" else f"maps-{method}-{size}"
            timed(key, lambda: explain_run(at, [method], split="train", settings=ExplainSettings(image_size=size)))
        row_path = work / f"boxes-{name}.json"
        if not row_path.is_file():
            start = time.perf_counter()
            if source == "mil":
                from iconolens.detect.mil import MilRecipe, MilTraining, mil_boxes

                recipe = MilRecipe(training=MilTraining(refinements=0)) if name == "mil" else MilRecipe()
                derived = mil_boxes(train, recipe=recipe, seed=0, feature_dir=work / "mil-features")
            else:
                derived, _ = first_pseudo_boxes(at, train, plan)
            seconds = time.perf_counter() - start
            scores = evaluate_derived_boxes(train, derived.boxes, name, image_ids=[s.id for s in train.samples])
            row_path.write_text(json.dumps({"source": name, "seconds": round(seconds, 1), **scores.row()}, indent=2))
        rows.append(json.loads(row_path.read_text()))
        print(json.dumps(rows[-1]), flush=True)

    chains = []
    for name in args.chain:
        size = SOURCES[name][1]
        at = run_at(work, size) if size else run
        result = weakly_supervised_detector(at, plan_for(name, args), log=lambda m: print(m, flush=True))
        chains.append((name, result.stages))
    if args.expert:
        chains.append(("expert", expert_detector(run, dataset, args)))
    write_table(work, rows, chains, timings)


def expert_detector(run: RunDirectory, dataset, args: argparse.Namespace) -> list[dict]:
    """The ceiling: the same detector and schedule on the expert boxes of the train split."""
    from iconolens.atomic import write_json_atomically
    from iconolens.detect.checkpoint import save_detector
    from iconolens.detect.training import train_detector
    from iconolens.detect.weak import _evaluate

    folder = run.root / "expert"
    summary = folder / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text())["stages"]
    start = time.perf_counter()
    train = dataset.subset("train")
    model, meta = train_detector(train, classes=("person",), iterations=args.iterations, batch_size=4, seed=0,
                                 min_size=320, max_size=args.max_size, backbone=args.backbone)
    save_detector(folder / "detector", model, meta)
    stages = [{"stage": "detector-0", "seconds": round(time.perf_counter() - start, 1),
               "training_boxes": sum(len(s.boxes) for s in train.samples), "check": meta.metrics["check"]}]
    start = time.perf_counter()
    stages.append({"stage": "evaluate-0", **_evaluate(folder / "detector", dataset.subset("val")),
                   "seconds": round(time.perf_counter() - start, 1)})
    write_json_atomically(summary, {"stages": stages})
    return stages


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def write_table(work: Path, rows: list[dict], chains: list[tuple[str, list[dict]]], timings: dict) -> None:
    lines = ["Pseudo boxes on the train split (690 paintings, 225 with people, 766 person boxes):", "",
             "| box source | boxes | boxes per image | mAP@0.5 (difficult ignored) | mAP@0.5 (counted) | CorLoc "
             "| recall@0.5 | average IoU | time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['source']} | {r['boxes']} | {_f(r.get('boxes_per_image'), 2)} | {_f(r.get('map50_ignore_difficult'))} "
                     f"| {_f(r.get('map50'))} | {_f(r.get('corloc'))} | {_f(r.get('recall50'))} | {_f(r.get('average_iou'))} "
                     f"| {r['seconds']:.0f} s |")
    lines += ["", "Detectors on the val split (587 paintings), and the pseudo boxes of each self-training round:", "",
              "| chain | stage | training boxes | pseudo mAP@0.5 / recall@0.5 | AP@0.5 on val | AP@0.5:0.95 "
              "| AP@0.5 / AP@0.5:0.95, difficult counted | time |",
              "|---|---|---|---|---|---|---|---|"]
    for name, stages in chains:
        by = {s["stage"]: s for s in stages}
        r = 0
        while f"detector-{r}" in by:
            boxes, det, ev = by.get(f"boxes-{r}", {}), by[f"detector-{r}"], by.get(f"evaluate-{r}", {})
            sc = boxes.get("scores") or {}
            seconds = boxes.get("seconds", 0) + det.get("seconds", 0)
            lines.append(
                f"| {name} | round {r} | {det.get('training_boxes', 'n/a')} | {_f(sc.get('map50_ignore_difficult'))} / "
                f"{_f(sc.get('recall50'))} | {_f(ev.get('AP50'))} | {_f(ev.get('AP50:95'))} "
                f"| {_f(ev.get('AP50_difficult_counted'))} / {_f(ev.get('AP50:95_difficult_counted'))} | {seconds:.0f} s |")
            r += 1
    lines += ["", "Stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())]
    text = "\n".join(lines) + "\n"
    (work / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
