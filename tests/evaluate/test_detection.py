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
