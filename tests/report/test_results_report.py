"""The report reads like a paper's results section, and builds from any run, whole, partial or damaged."""

from __future__ import annotations

import csv
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconolens.atomic import write_json_atomically
from iconolens.data.coco import write_coco
from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.records import Box, Dataset, Sample
from iconolens.evaluate.boxes import BoxRecipe, derive_boxes, write_derived_boxes
from iconolens.evaluate.declarations import DETECTION_METRICS, LOCALISATION_METRICS
from iconolens.evaluate.detection import evaluate_derived_boxes
from iconolens.evaluate.localisation import evaluate_localisation
from iconolens.explain.store import MapStore
from iconolens.report.class_grid import GAP, HEADER_HEIGHT, LABEL_WIDTH
from iconolens.report.figures import localisation_curves_figures
from iconolens.report.html import write_run_report
from iconolens.report.tables import write_csv
from iconolens.run import RunDirectory

CLASSES = ("Peter", "Paul", "Mary")
METHODS = ("cam", "gradcam")
PAPER_ORDER = ["classifier", "box-table", "localisation-peaks", "localisation-curves", "faithfulness", "class-grid",
               "methods"]
SIDE = 256  # the grid's cell size
RED, GREEN = (255, 0, 0), (0, 255, 0)

# Image "a" (test, 120 x 80) shows Peter and Paul: a figure box of Peter, his keys and Paul's sword.
KEYS = (10.0, 10.0, 40.0, 30.0)
SWORD = (60.0, 45.0, 100.0, 70.0)
PETER = (5.0, 5.0, 50.0, 75.0)
DERIVED_KEYS = (70.0, 40.0, 110.0, 75.0)  # where the cam boxes put Peter's attribute: far from the keys


def _dataset(tmp_path: Path, boxes: bool = True) -> Dataset:
    """Three grey paintings: "a" (test, Peter and Paul), "b" (train, Paul), "c" (test, Mary)."""
    folder = tmp_path / "paintings"
    folder.mkdir(exist_ok=True)
    specs = [("a", (120, 80), ("Peter", "Paul"), "test"), ("b", (80, 80), ("Paul",), "train"),
             ("c", (64, 96), ("Mary",), "test")]
    samples = []
    for sid, (width, height), labels, split in specs:
        path = folder / f"{sid}.png"
        Image.new("RGB", (width, height), (128, 128, 128)).save(path)
        found = ()
        if boxes and sid == "a":
            found = (Box(*PETER, label="Peter"), Box(*KEYS, label="keys - Peter", level="attribute"),
                     Box(*SWORD, label="sword - Paul", level="attribute"))
        samples.append(Sample(sid, path, labels, found, width=width, height=height, split=split))
    return Dataset(tuple(samples), CLASSES, multi_label=True)


def _maps(run: RunDirectory, dataset: Dataset, methods=METHODS) -> dict[str, MapStore]:
    """Maps of every class for every image, hot in one corner per method."""
    stores = {}
    for k, method in enumerate(methods):
        store = MapStore(run.maps_dir(method))
        store.initialise(list(CLASSES), method, {"target_layer": "layer4"})
        for sample in dataset.samples:
            maps = np.zeros((len(CLASSES), 4, 4), dtype=np.float32)
            maps[:, k, k] = 1.0
            maps[:, 2, 1] = 0.5
            store.write(sample.id, maps, np.array([0.7, 0.6, 0.2], dtype=np.float32))
        stores[method] = store
    return stores


def _localisation(run: RunDirectory, dataset: Dataset, stores, level: str) -> Path:
    """What ``iconolens evaluate --split test`` writes: JSON, CSV, peaks CSV and the four curves."""
    report = evaluate_localisation(dataset.subset("test"), stores, level=level)
    stem = f"localisation_{level}_test"
    write_json_atomically(run.metrics_dir / f"{stem}.json", report.to_json())
    write_csv(run.metrics_dir / f"{stem}.csv", report.rows())
    peaks = []
    for method in report.methods:
        for metric in report.metrics:
            value, at = report.peak(method, metric.key)
            peaks.append({"method": method, "metric": metric.key,
                          "best": "n/a" if np.isnan(value) else f"{value:.6f}",
                          "at_threshold": "n/a" if np.isnan(at) else f"{at:.2f}",
                          "higher_is_better": metric.higher_is_better})
    localisation_curves_figures(report, run.report_dir, prefix=f"{stem}_")
    return write_csv(run.metrics_dir / f"{stem}_peaks.csv", peaks)


def _boxes(run: RunDirectory, dataset: Dataset, stores, level: str) -> Path:
    """What ``iconolens boxes --no-gate`` writes for each method: box files, their scores and the table."""
    rows = []
    for method, store in stores.items():
        derived = derive_boxes(dataset, store, BoxRecipe(level=level, gate=False), method=method)
        write_derived_boxes(derived, dataset, run.boxes_dir)
        scores = evaluate_derived_boxes(dataset, derived.boxes, method, level=level, image_ids=derived.selected)
        write_json_atomically(run.metrics_dir / f"boxes_{level}_{method}.json", {"scores": scores.to_json()})
        rows.append(scores.row())
    return write_csv(run.metrics_dir / f"boxes_{level}.csv", rows)


def _classifier(run: RunDirectory, dataset: Dataset, checkpoint: Path) -> None:
    """The random ResNet checkpoint in model/, scored on the test split as ``iconolens evaluate-classifier``
    (a multi-class model: each image keeps its first label, and every class has a training image)."""
    from iconolens.models.training import evaluate_classifier

    shutil.copytree(checkpoint, run.model_dir)
    single = [replace(s, labels=s.labels[:1]) for s in dataset.samples]
    single += [replace(single[0], id=f"train-{c}", labels=(c,), split="train") for c in CLASSES]
    evaluate_classifier(Dataset(tuple(single), CLASSES), run, "test")


@pytest.fixture
def full_run(tmp_path: Path, saints_checkpoint: Path) -> RunDirectory:
    """A run with every stage's files: classifier, maps, localisation, boxes and faithfulness."""
    run = RunDirectory(tmp_path / "run")
    dataset = _dataset(tmp_path)
    save_dataset_json(dataset, run.dataset_json)
    _classifier(run, dataset, saints_checkpoint)
    stores = _maps(run, dataset)
    for level in ("figure", "attribute"):
        _localisation(run, dataset, stores, level)
        _boxes(run, dataset.subset("test"), stores, level)
    write_json_atomically(run.metrics_dir / "faithfulness_test.json", {
        "steps": 10, "images": 2,
        "methods": {"cam": {"deletion_auc": 0.25, "insertion_auc": 0.5, "pairs": 3, "skipped": 0},
                    "gradcam": {"deletion_auc": 0.125, "insertion_auc": 0.375, "pairs": 3, "skipped": 1}}})
    return run


def _section(text: str, key: str) -> str:
    match = re.search(rf'<section id="{key}">(.*?)</section>', text, re.DOTALL)
    assert match, f"no section {key}"
    return match.group(1)


def _cells(section: str, method: str) -> dict[tuple[str | None, str], str]:
    """(level, metric) -> cell text of a method's row."""
    row = re.search(rf'<tr data-method="{re.escape(method)}">(.*?)</tr>', section, re.DOTALL).group(1)
    cells = {}
    for level, metric, text in re.findall(r'<td(?: data-level="(\w+)")? data-metric="(\w+)">(.*?)</td>', row):
        cells[(level or None, metric)] = re.sub(r"</?strong>", "", text)
    return cells


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_sections_follow_the_order_of_a_results_section(full_run):
    (full_run.report_dir / "overlays").mkdir()
    Image.new("RGB", (8, 8)).save(full_run.report_dir / "overlays" / "a.cam.Peter.png")
    write_csv(full_run.metrics_dir / "grid_search.csv", [{"threshold": 0.1, "map50": 0.2}])
    text = write_run_report(full_run.root, title="saints").read_text(encoding="utf-8")
    found = re.findall(r'<section id="([^"]+)">', text)
    assert found == [*PAPER_ORDER, "other-tables", "other-figures"]
    others = _section(text, "other-tables")
    assert "grid_search.csv" in others and "boxes_figure.csv" not in others  # shown above, not twice
    assert 'src="overlays/a.cam.Peter.png"' in _section(text, "other-figures")
    assert "class_grid/" not in _section(text, "other-figures")
    assert "could not be built" not in text and 'class="note"' not in text
    numbers = [int(n) for n in re.findall(r"<strong>Table (\d+)\.</strong>", text)]
    assert numbers == list(range(1, len(numbers) + 1))  # numbered in reading order
    for source in re.findall(r'<img src="([^"]+)"', text):
        assert (full_run.report_dir / source).resolve().is_file()


def test_classifier_section_states_settings_and_test_scores_in_words(full_run):
    text = write_run_report(full_run.root).read_text(encoding="utf-8")
    section = _section(text, "classifier")
    scores = json.loads((full_run.metrics_dir / "classifier_test.json").read_text())
    assert "<strong>resnet18</strong>" in section and "64 &times; 64 pixels" in section
    assert "3: Peter, Paul, Mary" in section
    assert f"on the {scores['n']} images of the test split" in section
    found = re.findall(r'<tr data-score="(\w+)"><td>([^<]+)</td><td>([^<]+)</td>', section)
    rows = {key: (words, value) for key, words, value in found}
    assert rows["accuracy"][0].startswith("accuracy: share of images")
    assert rows["roc_auc"][0].startswith("mean ROC-AUC over classes")
    for key in ("accuracy", "macro_f1", "roc_auc", "pr_auc"):
        assert float(rows[key][1]) == pytest.approx(scores[key], abs=5e-4)
    assert "top5_accuracy" not in rows  # three classes: always among the top five, not worth a row
    assert 'src="confusion_test.png"' in section and "Confusion matrix of the classifier on the test split" in section
    per_class = _csv_rows(full_run.report_dir / "classifier_test_per_class.csv")
    assert [r["class"] for r in per_class] == list(CLASSES)


def test_table_4_4_rows_are_the_csv_values_of_each_method(full_run):
    # A method scored at figure level only must read n/a at attribute level, not another method's value.
    figure_csv = full_run.metrics_dir / "boxes_figure.csv"
    rows = _csv_rows(figure_csv)
    rows.append({**rows[0], "method": "mil", "average_iou": "0.6125", "gt_known_loc": "37.5", "map50": "0.4321"})
    write_csv(figure_csv, rows, list(rows[0]))
    text = write_run_report(full_run.root).read_text(encoding="utf-8")
    section = _section(text, "box-table")
    assert "Average IoU <small>(higher is better)</small>" in section
    assert "Figure boxes (whole figures)" in section and "Attribute boxes (iconographic symbols)" in section
    for level in ("figure", "attribute"):
        for row in _csv_rows(full_run.metrics_dir / f"boxes_{level}.csv"):
            cells = _cells(section, row["method"])
            for metric in DETECTION_METRICS:
                digits = 2 if metric.value_range[1] > 1 else 3
                expected = "n/a" if row[metric.key] == "" else f"{float(row[metric.key]):.{digits}f}"
                assert cells[(level, metric.key)] == expected
    assert _cells(section, "mil")[("figure", "average_iou")] == "0.613"
    assert _cells(section, "mil")[("figure", "gt_known_loc")] == "37.50"
    assert _cells(section, "mil")[("attribute", "map50")] == "n/a"
    assert re.search(r'data-metric="average_iou"><strong>0\.613</strong>', section)  # the best, in bold
    assert 'href="../metrics/boxes_figure.csv"' in section


def test_best_thresholds_are_the_peaks_with_their_direction(full_run):
    text = write_run_report(full_run.root).read_text(encoding="utf-8")
    section = _section(text, "localisation-peaks")
    for metric in LOCALISATION_METRICS:
        word = "higher" if metric.higher_is_better else "lower"
        assert f"{metric.title} <small>({word} is better)</small>" in section
    for level in ("figure", "attribute"):
        part = re.search(rf'<div data-result="localisation_{level}_test">(.*?)</div>', section, re.DOTALL).group(1)
        for row in _csv_rows(full_run.metrics_dir / f"localisation_{level}_test_peaks.csv"):
            cell = _cells(part, row["method"])[(None, row["metric"])]
            if row["best"] == "n/a":
                assert cell == "n/a"
            else:
                assert cell == f"{float(row['best']):.3f} at t = {row['at_threshold']}"


def test_curves_and_faithfulness_are_captioned_in_words(full_run):
    text = write_run_report(full_run.root).read_text(encoding="utf-8")
    curves = _section(text, "localisation-curves")
    assert len(re.findall(r"<img ", curves)) == 2 * len(LOCALISATION_METRICS)
    assert ('src="localisation_attribute_test_irrelevant_attention.png"' in curves
            and "Irrelevant attention against the foreground threshold t" in curves and "lower is better" in curves)
    faithfulness = _section(text, "faithfulness")
    assert "Deletion area <small>(lower is better)</small>" in faithfulness
    assert "on 2 images of the test split, in 10 steps" in faithfulness
    gradcam = _cells(faithfulness, "gradcam")
    assert gradcam[(None, "deletion_auc")] == "0.125" and gradcam[(None, "insertion_auc")] == "0.375"
    assert re.search(r'data-metric="deletion_auc"><strong>0\.125</strong>', faithfulness)  # lower is better


def _outline(box, scale: float, origin: tuple[int, int], size: tuple[int, int], tolerance: float):
    """Pixels within ``tolerance`` of the 2-pixel outline of a box drawn at ``scale`` in a cell."""
    x0, y0 = box[0] * scale + origin[0], box[1] * scale + origin[1]
    x1, y1 = box[2] * scale - 1 + origin[0], box[3] * scale - 1 + origin[1]
    ys, xs = np.mgrid[0:size[1], 0:size[0]]
    outer = (xs >= x0 - tolerance) & (xs <= x1 + tolerance) & (ys >= y0 - tolerance) & (ys <= y1 + tolerance)
    inner = (xs > x0 + 1 + tolerance) & (xs < x1 - 1 - tolerance) & (ys > y0 + 1 + tolerance) & (ys < y1 - 1 - tolerance)
    return outer & ~inner


def _sure(box, scale: float, origin: tuple[int, int]) -> list[tuple[int, int]]:
    """(x, y) pixels the outline covers however its fractional ends are rounded: the inner column or row of
    each 2-pixel edge, away from the corners."""
    x0, y0 = box[0] * scale + origin[0], box[1] * scale + origin[1]
    x1, y1 = box[2] * scale - 1 + origin[0], box[3] * scale - 1 + origin[1]
    left, right, top, bottom = int(np.floor(x0)) + 1, int(np.floor(x1)), int(np.floor(y0)) + 1, int(np.floor(y1))
    points = [(x, y) for x in range(left + 2, right - 2) for y in (top, bottom)]
    return points + [(x, y) for y in range(top + 2, bottom - 2) for x in (left, right)]


def _colour(cell: np.ndarray, colour) -> np.ndarray:
    return np.all(cell == np.array(colour), axis=-1)


def _grid_cells(page: Path, name: str, rows: int, columns: int) -> list[list[np.ndarray]]:
    text = page.read_text(encoding="utf-8")
    source = next(s for s in re.findall(r'<img src="([^"]+)"', text) if s.endswith(f"class_grid/{name}"))
    sheet = np.asarray(Image.open(page.parent / source).convert("RGB"))
    assert sheet.shape == (HEADER_HEIGHT + rows * (SIDE + GAP), LABEL_WIDTH + columns * (SIDE + GAP), 3)
    return [[sheet[HEADER_HEIGHT + r * (SIDE + GAP):][:SIDE, LABEL_WIDTH + c * (SIDE + GAP):][:, :SIDE]
             for c in range(columns)] for r in range(rows)]


def test_grid_draws_expert_boxes_of_the_rows_class_in_red_and_derived_ones_in_green(tmp_path):
    run = RunDirectory(tmp_path / "run")
    save_dataset_json(_dataset(tmp_path), run.dataset_json)
    # Expert boxes and the image sizes, read back from dataset.json, not from the objects that wrote it.
    stored = {s["id"]: s for s in json.loads(run.dataset_json.read_text())["samples"]}
    dataset = _dataset(tmp_path)
    _maps(run, dataset)
    a = next(s for s in dataset.samples if s.id == "a")
    derived = Dataset((Sample("a", a.path, a.labels, (Box(*DERIVED_KEYS, label="region - Peter", level="attribute"),),
                              width=120, height=80, split="test"),), CLASSES)
    write_coco(derived, run.boxes_dir / "cam_attribute_pseudo_coco.json")

    page = write_run_report(run.root)
    # Attribute rows: Peter has only "a"; Paul has "a" (test) then "b" (train); Mary "c" has no box.
    cells = _grid_cells(page, "attribute_1.png", rows=4, columns=2)
    width, height = stored["a"]["width"], stored["a"]["height"]
    scale = SIDE / max(width, height)
    origin = ((SIDE - round(width * scale)) // 2, (SIDE - round(height * scale)) // 2)
    expected = {}
    for item in stored["a"]["boxes"]:
        expected[item["label"]] = item["xyxy"]
    for row, label in ((0, "keys - Peter"), (1, "sword - Paul")):
        for column in range(2):
            cell = cells[row][column]
            red = _colour(cell, RED)
            near = _outline(expected[label], scale, origin, (SIDE, SIDE), tolerance=1.0)
            assert red.sum() > 100
            assert not (red & ~near).any(), "red pixels away from the expert box of the row's class"
            assert all(red[y, x] for x, y in _sure(expected[label], scale, origin)), "the expert box is not drawn"
    # The cam column has Peter's derived box in green; gradcam has no box file; Paul has no derived box.
    green = _colour(cells[0][0], GREEN)
    near = _outline(DERIVED_KEYS, scale, origin, (SIDE, SIDE), tolerance=1.0)
    assert green.sum() > 100 and not (green & ~near).any()
    assert all(green[y, x] for x, y in _sure(DERIVED_KEYS, scale, origin))
    assert not _colour(cells[0][1], GREEN).any() and not _colour(cells[1][0], GREEN).any()
    for column in range(2):  # "b" and "c" have no boxes
        assert not _colour(cells[2][column], RED).any() and not _colour(cells[3][column], RED).any()
    # The figure sheet draws the figure box of Peter, not his attributes.
    figure_cells = _grid_cells(page, "figure_1.png", rows=4, columns=2)
    red = _colour(figure_cells[0][0], RED)
    assert red.sum() > 100
    assert not (red & ~_outline(expected["Peter"], scale, origin, (SIDE, SIDE), tolerance=1.0)).any()
    text = page.read_text(encoding="utf-8")
    assert 'href="../boxes/cam_attribute_pseudo_coco.json"' in _section(text, "class-grid")


def test_run_with_only_a_dataset_builds_a_page_naming_what_is_missing(tmp_path):
    run = RunDirectory(tmp_path / "run")
    save_dataset_json(_dataset(tmp_path), run.dataset_json)
    text = write_run_report(run.root, title="only data").read_text(encoding="utf-8")
    assert "<h1>only data</h1>" in text and "no results yet" in text
    assert "<code>model/meta.json</code> is missing" in text
    assert "<code>maps</code> holds no saliency maps" in text
    assert "could not be built" not in text and "<section" not in text


def test_classifier_without_maps(tmp_path, saints_checkpoint):
    run = RunDirectory(tmp_path / "run")
    dataset = _dataset(tmp_path, boxes=False)
    save_dataset_json(dataset, run.dataset_json)
    _classifier(run, dataset, saints_checkpoint)
    text = write_run_report(run.root).read_text(encoding="utf-8")
    assert re.findall(r'<section id="([^"]+)">', text) == ["classifier"]
    assert "no boxes derived from maps in this run" in text and "could not be built" not in text


def test_maps_without_any_box_give_a_grid_of_maps_only(tmp_path):
    run = RunDirectory(tmp_path / "run")
    dataset = _dataset(tmp_path, boxes=False)
    save_dataset_json(dataset, run.dataset_json)
    _maps(run, dataset)
    page = write_run_report(run.root)
    text = page.read_text(encoding="utf-8")
    assert "neither expert nor derived boxes" in _section(text, "class-grid")
    rows = 4  # Peter: a; Paul: a, b; Mary: c
    for row in _grid_cells(page, "maps_1.png", rows=rows, columns=len(METHODS)):
        for cell in row:
            assert not _colour(cell, RED).any() and not _colour(cell, GREEN).any()
            assert cell.std() > 5  # a map is drawn, not an empty cell
    assert "could not be built" not in text


def test_detector_run_shows_its_box_scores(tmp_path):
    run = RunDirectory(tmp_path / "run")
    dataset = _dataset(tmp_path)
    save_dataset_json(dataset, run.dataset_json)
    scores = {"method": "mil", "average_iou": 0.4125, "gt_known_loc": 62.5, "map50": 0.3, "ious": [0.4125]}
    write_json_atomically(run.metrics_dir / "boxes_figure_mil.json", {"recipe": {"method": "mil"}, "scores": scores})
    write_coco(Dataset((dataset.samples[0],), CLASSES), run.boxes_dir / "mil_figure_pseudo_coco.json")
    write_json_atomically(run.root / "weak" / "summary.json", {"stages": []})
    write_json_atomically(run.root / "weak" / "round-0" / "detector" / "detector.json", {"backbone": "resnet50"})
    text = write_run_report(run.root).read_text(encoding="utf-8")
    cells = _cells(_section(text, "box-table"), "mil")
    assert cells[("figure", "average_iou")] == "0.412" and cells[("figure", "gt_known_loc")] == "62.50"
    assert "could not be built" not in text


@pytest.mark.parametrize("name,content,sentence,kept", [
    ("model/meta.json", "{not json", "<code>model/meta.json</code> is damaged", "classifier"),
    ("metrics/classifier_test.json", "[1,", "<code>metrics/classifier_test.json</code> is damaged", "classifier"),
    ("metrics/boxes_attribute.csv", "", "<code>metrics/boxes_attribute.csv</code> is damaged", "box-table"),
    ("metrics/localisation_figure_test_peaks.csv", "method\ncam\n",
     "<code>metrics/localisation_figure_test_peaks.csv</code> is damaged", "localisation-peaks"),
    ("metrics/faithfulness_test.json", "{", "<code>metrics/faithfulness_test.json</code> is damaged", None),
    ("boxes/cam_attribute_pseudo_coco.json", '{"images": 3}', "boxes/cam_attribute_pseudo_coco.json: box file is damaged",
     "class-grid"),
    ("maps/gradcam/meta.json", "{", "maps/gradcam/meta.json: meta.json is not valid JSON", "class-grid"),
    ("dataset.json", "{", "<code>dataset.json</code> cannot be read", "box-table"),
])
def test_a_damaged_file_costs_at_most_its_section_with_a_sentence_naming_it(full_run, name, content, sentence, kept):
    (full_run.root / name).write_text(content, encoding="utf-8")
    text = write_run_report(full_run.root).read_text(encoding="utf-8")
    assert sentence in text
    assert "Traceback" not in text and "could not be built" not in text
    if kept:
        assert f'<section id="{kept}">' in text
    assert '<section id="localisation-curves">' in text  # figures of other sections are untouched


def test_a_damaged_map_file_leaves_one_cell_empty(full_run):
    store = MapStore(full_run.maps_dir("gradcam"))
    store.path_for("a").write_bytes(b"not a map")
    text = write_run_report(full_run.root).read_text(encoding="utf-8")
    assert re.search(r"maps/gradcam/a\.[0-9a-f]+\.npz: map file is damaged", text)
    assert '<section id="class-grid">' in text and '<section id="methods">' in text
