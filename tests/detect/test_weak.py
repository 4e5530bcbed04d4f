"""The weakly supervised chain end to end on a small synthetic collection: stages, resumption, no expert box."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from iconolens.data.coco import read_coco
from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.splits import split_dataset
from iconolens.data.synth import write_synthetic_collection
from iconolens.detect.augmentation import PaintingAugmentation
from iconolens.detect.self_training import RelabelRule
from iconolens.detect.weak import WeakDetectionPlan, weakly_supervised_detector
from iconolens.errors import BadInputError

PLAN = WeakDetectionPlan(classifier_image_size=96, classifier_epochs=3, map_size=96, iterations=2,
                         round_iterations=1, rounds=1, batch_size=2, min_size=96, max_size=96,
                         evaluate_split="val")


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("weak")
    dataset = split_dataset(read_coco(write_synthetic_collection(root / "synth", 40, seed=5, image_size=96)), seed=5)
    return root, dataset


def _run(root: Path, name: str, dataset) -> Path:
    run = root / name
    save_dataset_json(dataset, run / "dataset.json")
    return run


def test_chain_runs_every_stage_then_resumes_without_redoing_any(collection) -> None:
    root, dataset = collection
    run = _run(root, "full", dataset)
    result = weakly_supervised_detector(run, PLAN)
    names = [s["stage"] for s in result.stages]
    assert names == ["classifier", "maps", "boxes-0", "detector-0", "evaluate-0", "boxes-1", "detector-1",
                     "evaluate-1"]
    assert result.detector_dir == run / "weak" / "round-1" / "detector"
    weights = result.detector_dir / "weights.pt"
    stamp = weights.stat().st_mtime_ns
    boxes = next((run / "weak" / "round-0" / "boxes").glob("*_detections.json"))
    first = json.loads(boxes.read_text())
    assert first and all(d["bbox"][2] > 0 and d["bbox"][3] > 0 for d in first)
    summary = json.loads((run / "weak" / "summary.json").read_text())
    assert summary["stages"][2]["scores"]["boxes"] == len(first)  # scored against the synthetic figure boxes
    evaluation = summary["stages"][4]
    assert set(evaluation["presence_gated"]) == {"AP50", "AP50:95", "AP50_difficult_counted",
                                                 "AP50:95_difficult_counted"}  # the run's classifier gates them
    assert set(evaluation["test_flip"]) == {*evaluation["presence_gated"], "presence_gated"}  # and with mirror images
    for r in (0, 1):  # every detector of the chain trains on paintings changed in colour and scale
        written = json.loads((run / "weak" / f"round-{r}" / "detector" / "detector.json").read_text())
        assert written["metrics"]["augmentation"]["scales"] == list(PaintingAugmentation().scales)

    again = weakly_supervised_detector(run, PLAN)
    assert [s["stage"] for s in again.stages] == names
    assert weights.stat().st_mtime_ns == stamp  # nothing retrained
    assert again.stages[3] == {**result.stages[3], "resumed": True}  # what the summary said of it is kept


@pytest.mark.parametrize("source", ["one-box", "segments"])
def test_pseudo_boxes_do_not_depend_on_expert_boxes(collection, source: str) -> None:
    root, dataset = collection
    with_boxes = _run(root, f"with-{source}", dataset)
    stripped = dataset.with_samples(tuple(replace(s, boxes=()) for s in dataset.samples))
    without = _run(root, f"without-{source}", stripped)
    plan = replace(PLAN, rounds=0, evaluate_split=None, source=source)
    weakly_supervised_detector(with_boxes, plan)
    weakly_supervised_detector(without, plan)
    read = lambda run: json.loads(next((run / "weak" / "round-0" / "boxes").glob("*_detections.json")).read_text())
    assert read(with_boxes) == read(without)


def test_a_split_without_images_is_one_sentence(collection) -> None:
    root, dataset = collection
    run = _run(root, "nosplit", dataset)
    with pytest.raises(BadInputError, match="no image of the run's dataset is in split 'holdout'"):
        weakly_supervised_detector(run, replace(PLAN, split="holdout"))


def test_cli_resumes_a_finished_chain_and_names_the_detector(collection, run_cli) -> None:
    root, dataset = collection
    run = _run(root, "cli", dataset)
    weakly_supervised_detector(run, replace(PLAN, rounds=0, evaluate_split=None))
    code, out, err = run_cli("detect", "weak", "--run", str(run), "--rounds", "0", "--map-size", "96",
                             "--min-size", "96", "--max-size", "96")
    assert code == 0, err
    assert "detector-0: already done" in out and f"detector: {run / 'weak' / 'round-0' / 'detector'}" in out
    assert f"--presence {run}" in out.replace("\n", " ")  # how to score it gated by the run's classifier
    code, _, err = run_cli("detect", "weak", "--run", str(run), "--source", "boxes-from-nowhere")
    assert code == 2 and "unknown box source 'boxes-from-nowhere'" in err


def test_the_faces_source_cuts_each_figure_out_unless_told_to_keep_the_canons_box(collection, monkeypatch) -> None:
    from iconolens.data.images import load_image
    from iconolens.detect import face_figures
    from iconolens.detect.figure_cut import cut_figure

    face = (40.0, 10.0, 52.0, 24.0)
    monkeypatch.setattr(face_figures, "mtcnn_faces", lambda: lambda pixels: [(*face, 0.99)])
    root, dataset = collection
    run = _run(root, "faces", dataset)
    found = {}
    for cut in (True, False):  # the second chain reuses the first's classifier and maps
        shutil.rmtree(run / "weak", ignore_errors=True)
        weakly_supervised_detector(run, replace(PLAN, rounds=int(cut), evaluate_split=None, source="faces",
                                                figure_cut=cut))
        boxes = json.loads(next((run / "weak" / "round-0" / "boxes").glob("*_detections.json")).read_text())
        found[cut] = {d["sample_id"]: d["bbox"] for d in boxes if d["score"] == pytest.approx(0.99)}
        # The face figures, apart from the fallback boxes, are written as the anchors later rounds keep.
        anchors = json.loads((run / "weak" / "round-0" / "anchors" / "faces_figure_detections.json").read_text())
        assert {d["sample_id"]: d["bbox"] for d in anchors} == found[cut] and len(anchors) == len(found[cut])
        if cut:  # round 1 keeps every anchor, with its score
            relabelled = json.loads(next((run / "weak" / "round-1" / "boxes").glob("*_detections.json")).read_text())
            key = lambda d: (d["sample_id"], tuple(round(v, 3) for v in d["bbox"]), d["score"])  # noqa: E731
            kept = {key(d) for d in relabelled}
            assert all(key(d) in kept for d in anchors)
    assert found[True] and found[True].keys() == found[False].keys()
    assert any(found[True][k] != found[False][k] for k in found[True])
    paths = {s.id: s.path for s in dataset.samples}
    for sample_id, (x, y, w, h) in found[False].items():
        image = load_image(paths[sample_id])
        canon = face_figures.FigureProportions().figure_box(face, *image.size)
        assert (x, y, x + w, y + h) == pytest.approx(canon, abs=0.01)
        cx, cy, cw, ch = found[True][sample_id]
        assert (cx, cy, cx + cw, cy + ch) == pytest.approx(cut_figure(image, face, canon), abs=0.01)


def test_without_the_fallback_paintings_without_a_face_wait_out_of_training(collection, monkeypatch) -> None:
    from iconolens.detect import face_figures

    root, dataset = collection
    train = dataset.subset("train")
    searched = [s for s in train.samples if s.labels]  # the images searched for faces, in this order
    never = searched[0].labels[0]  # a class in whose paintings no face is ever found
    finds = iter([i % 2 == 1 and never not in s.labels for i, s in enumerate(searched)])
    monkeypatch.setattr(face_figures, "mtcnn_faces",
                        lambda: lambda pixels: [(40.0, 10.0, 52.0, 24.0, 0.99)] if next(finds) else [])
    run = _run(root, "fallback", dataset)
    weakly_supervised_detector(run, replace(PLAN, rounds=0, evaluate_split=None, source="faces"))  # the default
    round0 = run / "weak" / "round-0"
    boxes = json.loads(next((round0 / "boxes").glob("*_detections.json")).read_text())
    anchors = json.loads((round0 / "anchors" / "faces_figure_detections.json").read_text())
    label = lambda d: train.classes[d["category_id"] - 1]  # noqa: E731
    with_faces = {label(d) for d in anchors}
    assert with_faces and never not in with_faces
    # a class with a face somewhere has its face figures alone; a class with none keeps its boxes around maps
    assert [d for d in boxes if label(d) in with_faces] == anchors
    mapped = {d["sample_id"] for d in boxes if label(d) == never}
    assert mapped and mapped <= {s.id for s in searched if never in s.labels}
    boxed = {(d["sample_id"], label(d)) for d in boxes}
    classes = {name for _, name in boxed}
    left_out = [s for s in train.samples if any((s.id, name) not in boxed for name in set(s.labels) & classes)]
    stage = next(s for s in json.loads((run / "weak" / "summary.json").read_text())["stages"]
                 if s["stage"] == "detector-0")
    assert left_out  # labelled with a class that has faces elsewhere, no face here: neither a figure nor a negative
    assert stage["training_images"] == len(train.samples) - len(left_out)
    # an image with a box of one of its classes and none of another is left out whole, its boxes with it
    assert stage["training_boxes"] == sum(d["sample_id"] not in {s.id for s in left_out} for d in boxes)

    shutil.rmtree(run / "weak")
    finds = iter([i % 2 == 1 and never not in s.labels for i, s in enumerate(searched)])
    weakly_supervised_detector(run, replace(PLAN, rounds=0, evaluate_split=None, source="faces", face_fallback=True))
    boxes = json.loads(next((round0 / "boxes").glob("*_detections.json")).read_text())
    boxed = {(d["sample_id"], label(d)) for d in boxes}
    assert all((s.id, name) in boxed for s in searched for name in s.labels)  # every image has a box of each label


def test_uncertain_detections_are_written_and_ignored_by_the_next_detector_only_when_asked(collection) -> None:
    root, dataset = collection
    run = _run(root, "uncertain", dataset)
    counts = {}
    for ignore in (False, True):  # the second chain reuses the first's classifier and maps
        shutil.rmtree(run / "weak", ignore_errors=True)
        # a floor of 0 keeps every detection, so whatever the detector finds below half its best is left out
        plan = replace(PLAN, evaluate_split=None, ignore_uncertain=ignore,
                       relabel=RelabelRule(relative_score=0.5, min_score=0.0))
        weakly_supervised_detector(run, plan)
        written = json.loads((run / "weak" / "round-1" / "uncertain" / "round1-uncertain_figure_detections.json")
                             .read_text())
        meta = json.loads((run / "weak" / "round-1" / "detector" / "detector.json").read_text())
        counts[ignore] = (len(written), meta["metrics"]["uncertain_boxes"])
    assert counts[False][1] == 0
    assert counts[True][0] == counts[False][0] > 0  # the same re-labelling both times
    assert counts[True][1] == counts[True][0]
