"""Detection scores of derived boxes, against values reasoned out by hand (not by pycocotools)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from iconolens.data.records import Box, Dataset, Sample
from iconolens.evaluate.boxes import DerivedBox
from iconolens.evaluate.detection import evaluate_derived_boxes


def _dataset(boxes_by_image: dict[str, list[Box]], classes=("person", "dog")) -> Dataset:
    samples = tuple(
        Sample(sid, Path(f"/x/{sid}.png"), tuple(sorted({b.label for b in boxes})), tuple(boxes),
               width=100, height=100)
        for sid, boxes in boxes_by_image.items()
    )
    return Dataset(samples=samples, classes=tuple(classes))


def _det(sid, x0, y0, x1, y1, score, label="person"):
    return DerivedBox(sid, label, x0, y0, x1, y1, mean_activation=score, probability=1.0)


def test_perfect_boxes_score_one():
    ds = _dataset({"a": [Box(0, 0, 10, 10, "person")], "b": [Box(20, 20, 50, 60, "person")]})
    scores = evaluate_derived_boxes(ds, [_det("a", 0, 0, 10, 10, 0.9), _det("b", 20, 20, 50, 60, 0.8)], "m")
    assert scores.average_iou == pytest.approx(1.0)
    assert scores.gt_known_loc == pytest.approx(100.0)
    assert scores.map50 == pytest.approx(1.0)
    assert math.isnan(scores.ap_per_class["dog"])  # no expert dog: no AP, left out of the mean


def test_false_positive_ranked_first_halves_ap():
    # One expert box; the top-scored box misses it, the second hits it. Precision at full recall is 1/2, and
    # the interpolated precision at every recall level up to 1 is therefore 1/2: AP = 0.5.
    ds = _dataset({"a": [Box(0, 0, 10, 10, "person")]})
    dets = [_det("a", 60, 60, 90, 90, 0.9), _det("a", 0, 0, 10, 10, 0.5)]
    scores = evaluate_derived_boxes(ds, dets, "m")
    assert scores.map50 == pytest.approx(0.5)
    assert scores.average_iou == pytest.approx(0.5)  # IoUs 0 and 1
    assert scores.gt_known_loc == pytest.approx(100.0)


def test_interpolated_precision_by_hand():
    # Two experts; ranked boxes: hit, miss, hit. Recall/precision: (0.5, 1), (0.5, 1/2), (1, 2/3).
    # Interpolated precision is 1 at the 51 recall levels 0..0.50 and 2/3 at the 50 levels 0.51..1.00.
    ds = _dataset({"a": [Box(0, 0, 10, 10, "person"), Box(50, 50, 70, 70, "person")]})
    dets = [_det("a", 0, 0, 10, 10, 0.9), _det("a", 80, 0, 99, 20, 0.7), _det("a", 50, 50, 70, 70, 0.6)]
    scores = evaluate_derived_boxes(ds, dets, "m")
    assert scores.map50 == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)


def test_average_iou_and_gt_known_loc_by_hand():
    ds = _dataset({
        "a": [Box(0, 0, 10, 10, "person")],
        "b": [Box(0, 0, 10, 10, "person")],
        "c": [Box(0, 0, 10, 10, "dog")],
    })
    dets = [
        _det("a", 5, 0, 15, 10, 0.9),  # IoU 50 / 150 = 1/3: not a GT-known hit
        _det("b", 0, 0, 10, 8, 0.8),  # IoU 80 / 100 = 0.8: a hit
        _det("c", 0, 0, 10, 10, 0.7),  # a person box where only a dog is: IoU 0
    ]
    scores = evaluate_derived_boxes(ds, dets, "m")
    assert scores.average_iou == pytest.approx((1 / 3 + 0.8 + 0) / 3)
    assert sorted(scores.ious.tolist()) == pytest.approx([0, 1 / 3, 0.8])
    assert scores.gt_known_loc == pytest.approx(100 * 1 / 3)  # one of three expert boxes found
    assert scores.ap_per_class["dog"] == 0.0  # an expert dog and no dog box
    assert scores.n_truth == 3 and scores.n_boxes == 3


def test_restricting_to_selected_images():
    ds = _dataset({"a": [Box(0, 0, 10, 10, "person")], "b": [Box(0, 0, 10, 10, "person")]})
    scores = evaluate_derived_boxes(ds, [_det("a", 0, 0, 10, 10, 0.9)], "m", image_ids=["a"])
    assert scores.gt_known_loc == pytest.approx(100.0) and scores.map50 == pytest.approx(1.0)
    everything = evaluate_derived_boxes(ds, [_det("a", 0, 0, 10, 10, 0.9)], "m")
    # Recall stops at 1/2 with precision 1: the 51 recall levels 0..0.50 have precision 1, the rest 0.
    assert everything.gt_known_loc == pytest.approx(50.0) and everything.map50 == pytest.approx(51 / 101)


def test_no_boxes_at_all_is_defined():
    ds = _dataset({"a": [Box(0, 0, 10, 10, "person")]})
    scores = evaluate_derived_boxes(ds, [], "m")
    assert math.isnan(scores.average_iou)
    assert scores.gt_known_loc == 0.0 and scores.map50 == 0.0
    assert scores.row()["average_iou"] is None


def test_corloc_recall_and_voc_map_by_hand():
    ds = _dataset({
        "a": [Box(0, 0, 10, 10, "person"), Box(50, 50, 70, 70, "person")],
        "b": [Box(0, 0, 20, 20, "person")],
        "c": [Box(10, 10, 30, 30, "person", difficult=True)],
    })
    dets = [
        _det("a", 0, 0, 10, 10, 0.9),  # top box of (a, person): IoU 1 -> a CorLoc success
        _det("a", 50, 50, 70, 60, 0.5),  # IoU 200 / 400 = 0.5: recalled (>= 0.5), not a GT-known hit (> 0.5)
        _det("b", 60, 60, 80, 80, 0.8),  # top box of (b, person) misses -> a CorLoc failure ...
        _det("b", 0, 0, 20, 20, 0.3),  # ... although a lower box finds the person
    ]  # (c, person) has an expert box and no derived box: a CorLoc failure
    scores = evaluate_derived_boxes(ds, dets, "m")
    assert scores.corloc == pytest.approx(100 * 1 / 3)
    assert scores.recall50 == pytest.approx(3 / 4)
    assert scores.gt_known_loc == pytest.approx(100 * 2 / 4)
    assert scores.boxes_per_image == pytest.approx(4 / 2)  # 4 boxes on the 2 images that have any
    assert scores.n_positive_pairs == 3 and scores.n_images_with_boxes == 2
    assert scores.average_iou == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    # Ranked: hit, miss, hit, hit. With the difficult box counted (4 experts), recall/precision run
    # (1/4, 1), (1/4, 1/2), (2/4, 2/3), (3/4, 3/4): interpolated precision 1 at the 26 recall levels
    # 0..0.25, 3/4 at the 50 levels 0.26..0.75, 0 beyond.
    assert scores.map50 == pytest.approx((26 * 1 + 50 * 0.75) / 101)
    # Ignoring it (3 experts): (1/3, 1), (1/3, 1/2), (2/3, 2/3), (1, 3/4): 1 at 0..0.33, 3/4 at 0.34..1.
    assert scores.map50_ignore_difficult == pytest.approx((34 * 1 + 67 * 0.75) / 101)
    row = scores.row()
    assert row["corloc"] == pytest.approx(33.33) and row["recall50"] == 0.75 and row["boxes_per_image"] == 2.0
    assert list(row)[:8] == ["method", "average_iou", "gt_known_loc", "map50", "corloc", "recall50",
                             "map50_ignore_difficult", "boxes_per_image"]
    per_class = scores.to_json()["ap_per_class_ignore_difficult"]
    assert per_class["person"] == pytest.approx(scores.map50_ignore_difficult, abs=1e-4)


def test_instance_measures_without_boxes_or_truth():
    ds = _dataset({"a": [Box(0, 0, 10, 10, "person")], "b": []})
    nothing = evaluate_derived_boxes(ds, [], "m")
    assert nothing.corloc == 0.0 and nothing.recall50 == 0.0
    assert nothing.map50_ignore_difficult == 0.0
    assert math.isnan(nothing.boxes_per_image) and nothing.row()["boxes_per_image"] is None
    no_truth = evaluate_derived_boxes(ds, [_det("b", 0, 0, 5, 5, 0.5)], "m", image_ids=["b"])
    assert math.isnan(no_truth.corloc) and math.isnan(no_truth.recall50)
    assert no_truth.boxes_per_image == 1.0
