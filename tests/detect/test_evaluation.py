from __future__ import annotations

import math

import pytest

from iconolens.data.records import Box
from iconolens.detect.evaluation import ScoredBox, coco_average_precision
from iconolens.detect.failures import match_detections


def test_ap_of_one_hit_and_one_false_positive_over_two_objects() -> None:
    truth = [[Box(10, 10, 50, 50, "p")], [Box(0, 0, 30, 30, "p")]]
    found = [[ScoredBox(10, 10, 50, 50, "p", 0.9)], [ScoredBox(60, 60, 90, 90, "p", 0.8)]]
    # precision is 1 up to recall 0.5 and never reaches recall 1: 51 of COCO's 101 recall points have precision 1
    scores = coco_average_precision(truth, found, ["p"])
    assert scores.ap50 == pytest.approx(51 / 101)
    assert scores.ap == pytest.approx(51 / 101)  # the hit is exact, so it matches at every IoU threshold


def test_ap_counts_a_loose_box_only_at_low_iou_thresholds() -> None:
    truth = [[Box(0, 0, 100, 100, "p")]]
    found = [[ScoredBox(0, 0, 100, 60, "p", 0.9)]]  # IoU 0.6: a hit at 0.5, 0.55, 0.6; a miss from 0.65 on
    scores = coco_average_precision(truth, found, ["p"])
    assert scores.ap50 == pytest.approx(1.0)
    assert scores.ap == pytest.approx(3 / 10)


def test_ranking_matters_when_the_false_positive_scores_higher() -> None:
    truth = [[Box(0, 0, 10, 10, "p")]]
    found = [[ScoredBox(50, 50, 60, 60, "p", 0.9), ScoredBox(0, 0, 10, 10, "p", 0.5)]]
    # recall 1 is reached at precision 1/2; interpolated precision is 1/2 at every recall point
    assert coco_average_precision(truth, found, ["p"]).ap50 == pytest.approx(0.5)


def test_no_detections_scores_zero_and_no_truth_scores_nan() -> None:
    assert coco_average_precision([[Box(0, 0, 10, 10, "p")]], [[]], ["p"]).ap50 == 0.0
    assert math.isnan(coco_average_precision([[]], [[ScoredBox(0, 0, 1, 1, "p", 1.0)]], ["p"]).ap50)


def test_matching_finds_false_positives_and_missed_objects() -> None:
    truth = [Box(0, 0, 10, 10, "p"), Box(20, 20, 30, 30, "p"), Box(40, 40, 50, 50, "q")]
    found = [
        ScoredBox(0, 0, 10, 10, "p", 0.9),     # hit
        ScoredBox(1, 0, 10, 10, "p", 0.8),     # duplicate of a used truth box: false positive
        ScoredBox(40, 40, 50, 50, "p", 0.7),   # right place, wrong class: false positive
    ]
    false_positives, missed = match_detections(found, truth)
    assert false_positives == [1, 2]
    assert missed == [1, 2]


def test_difficult_boxes_are_neither_required_nor_penalised() -> None:
    truth = [[Box(0, 0, 40, 40, "p"), Box(60, 60, 90, 90, "p", difficult=True)]]
    only_easy = [[ScoredBox(0, 0, 40, 40, "p", 0.9)]]
    both = [[ScoredBox(0, 0, 40, 40, "p", 0.9), ScoredBox(60, 60, 90, 90, "p", 0.95)]]
    assert coco_average_precision(truth, only_easy, ["p"]).ap50 == pytest.approx(1.0)
    assert coco_average_precision(truth, both, ["p"]).ap50 == pytest.approx(1.0)
    # counted like the others, the missed difficult box halves the recall: 51 of 101 recall points
    counted = coco_average_precision(truth, only_easy, ["p"], ignore_difficult=False)
    assert counted.ap50 == pytest.approx(51 / 101)
