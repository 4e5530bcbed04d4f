"""`iconolens evaluate` and `iconolens boxes` on a small run made here, and their answers to bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.records import Box, Dataset, Sample
from iconolens.explain.store import MapStore
from iconolens.run import RunDirectory


@pytest.fixture
def run(tmp_path: Path) -> RunDirectory:
    """Three 40x40 images of one person each; 'good' maps sit on the person, 'off' maps beside it."""
    rundir = RunDirectory(tmp_path / "run")
    samples = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (40, 40), (90, 60, 30)).save(path)
        x0 = 4 + 8 * i
        samples.append(Sample(f"img{i}", path, ("person",), (Box(x0, 8, x0 + 16, 32, "person"),),
                              width=40, height=40, split="test" if i else "val"))
    save_dataset_json(Dataset(samples=tuple(samples), classes=("person",)), rundir.dataset_json)
    for method, offset in (("good", 0), ("off", 20)):
        store = MapStore(rundir.maps_dir(method))
        store.initialise(["person"], method, {})
        for i, sample in enumerate(samples):
            maps = np.zeros((1, 40, 40), dtype=np.float32)
            b = sample.boxes[0]
            maps[0, 8:32, int(b.x0) + offset:int(b.x1) + offset] = 1.0
            store.write(sample.id, maps, np.array([0.9], dtype=np.float32))
    return rundir


def test_evaluate_writes_metrics_and_curves(run_cli, run):
    code, out, err = run_cli("evaluate", "--run", str(run.root))
    assert code == 0, err
    data = json.loads((run.metrics_dir / "localisation_figure.json").read_text())
    k = data["thresholds"].index(0.5)
    assert data["curves"]["good"]["(all)"]["global_iou"][k] == pytest.approx(1.0)
    # 'off' is shifted 20 px right: img0 and img1 look beside their box (irrelevant attention 1); img2's
    # map falls outside the image, so it is constant, has no foreground and is left out of that average.
    assert data["curves"]["off"]["person"]["irrelevant_attention"][k] == pytest.approx(1.0)
    assert data["curves"]["off"]["(all)"]["global_iou"][k] == pytest.approx(0.0)
    assert data["counts"]["good"]["maps"] == 3
    with open(run.metrics_dir / "localisation_figure.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 2 * 4 * 21  # methods x (person, all) x metrics x thresholds
    for metric in ("component_iou", "global_iou", "box_coverage", "irrelevant_attention"):
        assert (run.report_dir / f"localisation_figure_{metric}.png").stat().st_size > 1000
    assert "good" in out and "Global IoU" in out


def test_evaluate_one_split_and_one_method(run_cli, run):
    code, _, err = run_cli("evaluate", "--run", str(run.root), "--methods", "good",
                            "--split", "test")
    assert code == 0, err
    data = json.loads((run.metrics_dir / "localisation_figure_test.json").read_text())
    assert list(data["curves"]) == ["good"] and data["counts"]["good"]["maps"] == 2


def test_boxes_writes_detections_table_and_histogram(run_cli, run):
    for method in ("good", "off"):
        code, out, err = run_cli("boxes", "--run", str(run.root), "--method", method,
                                  "--no-gate")
        assert code == 0, err
    detections = json.loads((run.boxes_dir / "good_figure_detections.json").read_text())
    assert len(detections) == 3
    assert detections[0]["bbox"] == [4.0, 8.0, 16.0, 24.0]  # a map exactly on the box gives the box
    with open(run.metrics_dir / "boxes_figure.csv") as handle:
        rows = {r["method"]: r for r in csv.DictReader(handle)}
    assert float(rows["good"]["average_iou"]) == pytest.approx(1.0)
    assert float(rows["good"]["map50"]) == pytest.approx(1.0)
    assert float(rows["off"]["gt_known_loc"]) == 0.0
    assert (run.report_dir / "boxes_figure_iou_histogram.png").exists()
    assert "Average IoU" in (run.metrics_dir / "boxes_figure.md").read_text()


def test_boxes_gate_selects_good_maps_only(run_cli, run):
    code, out, err = run_cli("boxes", "--run", str(run.root), "--method", "off")
    assert code == 0, err
    record = json.loads((run.metrics_dir / "boxes_figure_off.json").read_text())
    # Every shifted map misses its box entirely, so none passes the figure gate (global IoU > 0.24).
    assert record["counts"]["gated_out"] == 3 and record["counts"]["boxes"] == 0
    assert "0 boxes" in out


def test_boxes_instances_finds_each_person_and_writes_the_new_columns(run_cli, tmp_path):
    rundir = RunDirectory(tmp_path / "group")
    path = tmp_path / "group.png"
    Image.new("RGB", (80, 40), (90, 60, 30)).save(path)
    people = (Box(5, 5, 25, 35, "person"), Box(45, 5, 65, 35, "person"))
    save_dataset_json(Dataset(samples=(Sample("group", path, ("person",), people, width=80, height=40),),
                              classes=("person",)), rundir.dataset_json)
    store = MapStore(rundir.maps_dir("good"))
    store.initialise(["person"], "good", {})
    maps = np.zeros((1, 40, 80), dtype=np.float32)
    maps[0, 5:35, 5:25] = 1.0
    maps[0, 5:35, 45:65] = 0.75
    store.write("group", maps, np.array([0.9], dtype=np.float32))
    code, _, err = run_cli("boxes", "--run", str(rundir.root), "--method", "good", "--no-gate", "--one-box")
    assert code == 0, err
    code, out, err = run_cli("boxes", "--run", str(rundir.root), "--method", "good", "--no-gate", "--instances",
                             "--max-instances", "5")
    assert code == 0, err
    detections = json.loads((rundir.boxes_dir / "good-instances_figure_detections.json").read_text())
    assert [d["bbox"] for d in detections] == [[5.0, 5.0, 20.0, 30.0], [45.0, 5.0, 20.0, 30.0]]
    with open(rundir.metrics_dir / "boxes_figure.csv") as handle:
        reader = csv.DictReader(handle)
        assert {"corloc", "recall50", "map50_ignore_difficult", "boxes_per_image"} <= set(reader.fieldnames)
        rows = {r["method"]: r for r in reader}
    # One box around both people (5..65 x 5..35) overlaps each by 600 / 1800 = 1/3: nothing found.
    assert float(rows["good"]["recall50"]) == 0.0 and float(rows["good"]["corloc"]) == 0.0
    assert float(rows["good"]["boxes_per_image"]) == 1.0
    assert float(rows["good-instances"]["recall50"]) == 1.0 and float(rows["good-instances"]["corloc"]) == 100.0
    assert float(rows["good-instances"]["boxes_per_image"]) == 2.0
    assert float(rows["good-instances"]["map50_ignore_difficult"]) == pytest.approx(1.0)
    record = json.loads((rundir.metrics_dir / "boxes_figure_good-instances.json").read_text())
    assert record["recipe"]["instances"] is True and record["recipe"]["instance_parameters"]["max_instances"] == 5
    table = (rundir.metrics_dir / "boxes_figure.md").read_text()
    assert "CorLoc (%)" in table and "Recall (IoU 0.5)" in table and "boxes / image" in table
    assert "good-instances" in out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["evaluate", "--run", "{missing}"], "run directory does not exist"),
        (["evaluate", "--run", "{empty}"], "no dataset.json"),
        (["evaluate", "--run", "{run}", "--methods", "rise"], "no maps of method 'rise'"),
        (["evaluate", "--run", "{run}", "--split", "train"], "no image of the run's dataset is in split 'train'"),
        (["boxes", "--run", "{run}", "--method", "good", "--threshold", "0.1", "--percentile", "90"],
         "not both"),
        (["boxes", "--run", "{run}", "--method", "nope"], "no maps of method 'nope'"),
        (["boxes", "--run", "{run}", "--method", "good", "--min-distance", "0.2"], "only apply with --instances"),
        (["boxes", "--run", "{run}", "--method", "good", "--instances", "--threshold", "0.1"],
         "apply to --one-box only"),
    ],
)
def test_bad_input_is_one_sentence(run_cli, run, tmp_path, args, fragment):
    (tmp_path / "empty").mkdir()
    filled = [a.format(missing=tmp_path / "missing", empty=tmp_path / "empty", run=run.root) for a in args]
    code, out, err = run_cli(*filled)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command, option", [("boxes", "--method"), ("evaluate", "--methods")])
def test_missing_maps_name_the_explain_command_that_makes_them(run_cli, run, command, option):
    code, _, err = run_cli(command, "--run", str(run.root), option, "cam")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"no maps of method 'cam'; run `iconolens explain --run {run.root} --methods cam` first" in err
    code, _, err = run_cli(command, "--run", str(run.root), option, "cams")  # not a method explain knows
    assert code == 2 and "no maps of method 'cams'; the run has maps of good, off" in err and "explain" not in err


@pytest.mark.parametrize("level, fragment", [
    ("figure", "the figure boxes of the images with maps are of dog, and the maps are of person only"),
    ("attribute", "none of the 3 images with maps has attribute boxes; they have figure boxes, so try --level figure"),
])
def test_evaluate_with_nothing_to_measure_fails_and_writes_nothing(run_cli, run, level, fragment):
    from dataclasses import replace

    from iconolens.data.dataset_json import load_dataset_json

    assert run_cli("evaluate", "--run", str(run.root))[0] == 0
    written = {path: path.read_bytes() for folder in (run.metrics_dir, run.report_dir) for path in folder.iterdir()}
    if level == "figure":  # the boxes are now of a class the maps do not know
        dataset = load_dataset_json(run.dataset_json)
        samples = tuple(replace(s, labels=("dog",), boxes=tuple(replace(b, label="dog") for b in s.boxes))
                        for s in dataset.samples)
        save_dataset_json(replace(dataset, samples=samples, classes=("dog",)), run.dataset_json)
    code, out, err = run_cli("evaluate", "--run", str(run.root), "--level", level)
    assert code == 2
    assert err.strip() == f"error: {run.dataset_json}: no map could be measured: {fragment}"
    assert out == ""
    after = {path: path.read_bytes() for folder in (run.metrics_dir, run.report_dir) for path in folder.iterdir()}
    assert after == written  # no new file, and the earlier results are kept as they were


def test_evaluate_table_rows_stay_whole_in_a_log(run_cli, run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # as when started from an 80-column terminal with output to a file
    code, out, err = run_cli("evaluate", "--run", str(run.root))
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and all(len(row) > 80 for row in rows)
    for method, row in zip(("good", "off"), rows):
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[0] == method and cells[-1] == "3" and all(" @ " in cell for cell in cells[1:-1])


def test_damaged_files_are_named_and_earlier_results_kept(run_cli, run):
    code, _, _ = run_cli("evaluate", "--run", str(run.root))
    assert code == 0
    before = (run.metrics_dir / "localisation_figure.json").read_bytes()
    (run.maps_dir("off") / "meta.json").write_text("{ not json")
    code, _, err = run_cli("evaluate", "--run", str(run.root))
    assert code == 2 and "meta.json" in err and "not valid JSON" in err
    assert (run.metrics_dir / "localisation_figure.json").read_bytes() == before
    run.dataset_json.write_text("[]")
    code, _, err = run_cli("evaluate", "--run", str(run.root))
    assert code == 2 and "dataset.json" in err
    assert (run.metrics_dir / "localisation_figure.json").read_bytes() == before


def _save_model(run: RunDirectory) -> None:
    """A random one-class MobileNetV2 at 32 px as the run's model."""
    import torch

    from iconolens.models.backbones import build_classifier
    from iconolens.models.checkpoint import save_checkpoint
    from iconolens.models.meta import ModelMeta

    torch.manual_seed(0)
    model = build_classifier("mobilenet_v2", 1, pretrained=False)
    save_checkpoint(run.model_dir, model, ModelMeta(classes=("person",), backbone="mobilenet_v2", input_size=32,
                                                    task="multilabel"))


def test_evaluate_with_faithfulness_uses_the_runs_model(run_cli, run):
    _save_model(run)
    code, out, err = run_cli("evaluate", "--run", str(run.root), "--faithfulness-images", "1",
                              "--steps", "3")
    assert code == 0, err
    data = json.loads((run.metrics_dir / "faithfulness.json").read_text())
    assert data["images"] == 1 and set(data["methods"]) == {"good", "off"}
    for result in data["methods"].values():
        assert result["pairs"] == 1
        assert 0.0 <= result["deletion_auc"] <= 1.0 and 0.0 <= result["insertion_auc"] <= 1.0
    assert "Deletion area" in out


def test_faithfulness_without_a_model_is_one_sentence(run_cli, run):
    code, _, err = run_cli("evaluate", "--run", str(run.root), "--faithfulness-images", "1")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"the run has no trained model yet; make one with `iconolens train --run {run.root}`" in err
    assert not run.metrics_dir.exists()  # said before anything is measured or written


def test_boxes_help_states_the_instance_defaults_of_the_library(run_cli, monkeypatch):
    from iconolens.evaluate import instances

    monkeypatch.setenv("COLUMNS", "200")  # wide enough that no option name is cut short
    code, out, _ = run_cli("boxes", "--help")
    assert code == 0
    text = " ".join(out.replace("│", " ").split())
    for option, value in (("--min-distance", instances.DEFAULT_MIN_DISTANCE),
                          ("--relative-height", instances.DEFAULT_RELATIVE_HEIGHT),
                          ("--region-fraction", instances.DEFAULT_REGION_FRACTION),
                          ("--nms-iou", instances.DEFAULT_NMS_IOU),
                          ("--max-instances", instances.DEFAULT_MAX_INSTANCES)):
        assert option in text
        assert f"(default {value})" in text


def test_boxes_segments_grows_a_part_map_into_the_painted_figure(run_cli, tmp_path):
    rundir = RunDirectory(tmp_path / "figure")
    path = tmp_path / "figure.png"
    rng = np.random.default_rng(1)
    pixels = (100 + rng.normal(0, 6, (60, 60, 3))).clip(0, 255)
    pixels[10:50, 20:40] = (210, 50, 40)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    figure = Box(20, 10, 40, 50, "person")
    save_dataset_json(Dataset(samples=(Sample("figure", path, ("person",), (figure,), width=60, height=60),),
                              classes=("person",)), rundir.dataset_json)
    store = MapStore(rundir.maps_dir("head"))
    store.initialise(["person"], "head", {})
    maps = np.zeros((1, 60, 60), dtype=np.float32)
    maps[0, 12:20, 25:35] = 1.0  # only the head is lit
    store.write("figure", maps, np.array([0.9], dtype=np.float32))
    code, out, err = run_cli("boxes", "--run", str(rundir.root), "--method", "head", "--no-gate", "--segments")
    assert code == 0, err
    detections = json.loads((rundir.boxes_dir / "head-segments_figure_detections.json").read_text())
    assert len(detections) == 1
    x, y, w, h = detections[0]["bbox"]
    # the box covers the figure (20..40 x 10..50) to within a few pixels, not just the head
    assert abs(x - 20) <= 2 and abs(y - 10) <= 2 and abs(x + w - 40) <= 2 and abs(y + h - 50) <= 2
    code, _, err = run_cli("boxes", "--run", str(rundir.root), "--method", "head", "--no-gate", "--segments",
                           "--percentile", "70")
    assert code == 2 and "--segments is seeded by the map's own percentiles" in err


def test_measures_of_slices_joined_equal_one_pass(run):
    """What the Ray engine's workers return for consecutive slices, joined, is what one pass over all gives."""
    from iconolens.evaluate.faithfulness import FaithfulnessAreas, faithfulness_areas
    from iconolens.evaluate.localisation import MeasuredMaps, evaluate_localisation, measure_maps
    from iconolens.models.checkpoint import load_run_model

    from iconolens.data.dataset_json import load_dataset_json

    dataset = load_dataset_json(run.dataset_json)
    stores = {m: MapStore(run.maps_dir(m)) for m in ("good", "off")}
    stores["off"].path_for("img2").unlink()  # one image's maps missing: counted, not measured
    samples = list(dataset.samples)
    joined = MeasuredMaps.joined([measure_maps(samples[i:i + 1], stores) for i in range(len(samples))])
    assert joined.skipped["off"]["missing_maps"] == 1 and joined.skipped["good"] == {"no_boxes": 0,
                                                                                   "class_not_in_maps": 0}
    report = joined.report("figure")
    assert report.to_json() == evaluate_localisation(dataset, stores).to_json()
    assert report.counts["off"]["maps"] == 2 and report.counts["off"]["missing_maps"] == 1

    _save_model(run)
    model, meta = load_run_model(run)
    whole = faithfulness_areas(model, meta, samples, stores, steps=3)
    parts = FaithfulnessAreas.joined([faithfulness_areas(model, meta, [x], stores, steps=3) for x in samples])
    assert parts == whole and len(whole.deletion["good"]) == 3 and whole.skipped == {"good": 0, "off": 1}
    means = whole.means()
    assert means["good"]["deletion_auc"] == pytest.approx(sum(whole.deletion["good"]) / 3)
    assert means["off"]["pairs"] == 2 and means["off"]["skipped"] == 1


def test_evaluate_on_ray_writes_what_the_in_process_engine_writes(run_cli, run, local_ray, monkeypatch):
    import torch

    _save_model(run)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on Ray's one-CPU workers: the thread count changes a network's last bits
    written = {}
    try:
        for engine in ("inprocess", "ray"):
            code, _, err = run_cli("evaluate", "--run", str(run.root), "--faithfulness-images", "3", "--steps", "3",
                                   "--engine", engine)
            assert code == 0, err
            written[engine] = {name: (run.metrics_dir / name).read_bytes()
                               for name in ("localisation_figure.json", "localisation_figure.csv", "faithfulness.json")}
            for path in run.metrics_dir.iterdir():
                path.unlink()
    finally:
        torch.set_num_threads(threads)
    assert written["ray"] == written["inprocess"]
    assert json.loads(written["ray"]["faithfulness.json"])["methods"]["good"]["pairs"] == 3


def test_evaluate_on_ray_survives_a_killed_worker(run, local_ray, tmp_path, monkeypatch, crashing_actor):
    import os

    from iconolens.data.dataset_json import load_dataset_json
    from iconolens.evaluate import ray_engine
    from iconolens.evaluate.localisation import evaluate_localisation

    flag = tmp_path / "crashed"
    monkeypatch.setattr(ray_engine, "MeasureActor", crashing_actor(ray_engine.MeasureActor, flag))
    dataset = load_dataset_json(run.dataset_json)
    stores = {m: MapStore(run.maps_dir(m)) for m in ("good", "off")}
    report = ray_engine.evaluate_localisation_on_ray(dataset, stores, slice_size=1, workers=1)
    assert flag.is_file() and int(flag.read_text()) != os.getpid(), "the worker did not crash"
    assert report.to_json() == evaluate_localisation(dataset, stores).to_json()
    assert report.counts["good"]["maps"] == 3
