"""Self-training's re-labelling: image labels decide which classes, the detector decides where."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iconolens.data.records import Box, Dataset, Sample
from iconolens.detect.detections import Detections
from iconolens.detect.self_training import RelabelRule, relabel
from iconolens.errors import BadInputError
from iconolens.evaluate.boxes import DerivedBox


class FixedDetector:
    """Reports the same detections on every image: classes are (background, saint, dog)."""

    classes = ("__background__", "saint", "dog")

    def __init__(self, boxes, scores, labels) -> None:
        self.boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        self.scores = torch.tensor(scores, dtype=torch.float32)
        self.labels = torch.tensor(labels)

    def __call__(self, images):
        probs = torch.nn.functional.one_hot(self.labels, 3).float()
        return [Detections(self.boxes.clone(), self.scores.clone(), probs, None, self.labels.clone()) for _ in images]


def _collection(tmp_path: Path, labels: list[tuple[str, ...]]) -> Dataset:
    samples = []
    for i, names in enumerate(labels):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(path)
        samples.append(Sample(str(i), path, names, (), 40, 40))
    return Dataset(tuple(samples), ("saint", "dog"), multi_label=True, root=tmp_path)


def test_relabelling_keeps_confident_detections_of_the_labelled_classes_only(tmp_path: Path) -> None:
    dataset = _collection(tmp_path, [("saint",), ("saint", "dog"), ()])
    # saint: 0.9 (kept), 0.5 (kept: >= 0.5 x 0.9), 0.3 (dropped: < 0.45); dog: 0.2 (best of its class: kept)
    detector = FixedDetector([[0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 9, 9], [1, 1, 39, 39]],
                             [0.9, 0.5, 0.3, 0.2], [1, 1, 1, 2])
    new, derived, uncertain = relabel(detector, dataset, min_size=40, max_size=40)
    first, second, negative = new.samples
    assert [b.xyxy for b in first.boxes] == [(0, 0, 10, 10), (20, 20, 30, 30)]
    assert {b.label for b in first.boxes} == {"saint"}  # the dog is not among this image's labels
    assert sorted((b.label, b.xyxy) for b in second.boxes) == [
        ("dog", (1, 1, 39, 39)), ("saint", (0, 0, 10, 10)), ("saint", (20, 20, 30, 30))]
    assert negative.boxes == ()
    assert len(derived) == 5 and {d.sample_id for d in derived} == {"0", "1"}
    # the saint at 0.3 is left uncertain in both images labelled saint (IoU 16 / 100 with the kept box at 0.9)
    assert [(d.sample_id, d.label, d.xyxy) for d in uncertain] == [("0", "saint", (5, 5, 9, 9)),
                                                                  ("1", "saint", (5, 5, 9, 9))]


def test_uncertain_detections_are_those_left_that_overlap_no_kept_box(tmp_path: Path) -> None:
    dataset = _collection(tmp_path, [("saint",)])
    anchors = [DerivedBox("0", "saint", 30, 0, 40, 10, mean_activation=0.9, probability=1.0)]
    detector = FixedDetector([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30], [21, 20, 30, 30], [30, 0, 40, 9]],
                             [0.9, 0.3, 0.3, 0.02, 0.2], [1, 1, 1, 1, 1])
    _, _, uncertain = relabel(detector, dataset, anchors=anchors, min_size=40, max_size=40)
    # 0.3 at IoU 100 / 110 with the kept 0.9 box: the same figure; 0.02: below min_score; the box at 0.2 is the
    # anchor's figure (IoU 0.9); only the saint at (20, 20, 30, 30) is left
    assert [(d.xyxy, d.score) for d in uncertain] == [((20, 20, 30, 30), pytest.approx(0.3))]


def test_an_image_the_detector_finds_nothing_in_keeps_its_previous_boxes(tmp_path: Path) -> None:
    dataset = _collection(tmp_path, [("saint",), ("dog",)])
    before = dataset.with_samples(tuple(
        Sample(s.id, s.path, s.labels, (Box(2, 2, 8, 8, s.labels[0]),), 40, 40) for s in dataset.samples))
    detector = FixedDetector([[0, 0, 10, 10], [3, 3, 20, 20]], [0.9, 0.01], [1, 2])  # the dog is below min_score
    new, derived, _ = relabel(detector, dataset, previous=before, rule=RelabelRule(min_score=0.05), min_size=40,
                           max_size=40)
    assert [b.xyxy for b in new.samples[0].boxes] == [(0, 0, 10, 10)]
    assert new.samples[1].boxes == before.samples[1].boxes
    assert [d.score for d in derived if d.sample_id == "1"] == [0.0]  # kept boxes rank below every detection


def test_relabel_rule_is_checked() -> None:
    with pytest.raises(BadInputError, match="relative_score and min_score"):
        RelabelRule(relative_score=1.5)


def test_anchors_stay_and_the_detector_adds_only_the_figures_they_miss(tmp_path: Path) -> None:
    dataset = _collection(tmp_path, [("saint",), ("saint",), ("saint",)])
    anchor = Box(0, 0, 10, 12, "saint")  # IoU with the detection (0, 0, 10, 10) is 100 / 120: the same figure
    anchors = [DerivedBox(i, "saint", 0, 0, 10, 12, mean_activation=0.97, probability=1.0) for i in ("0", "1")]
    previous = dataset.with_samples(tuple(replace(s, boxes=(anchor, Box(30, 30, 39, 39, "saint"))) if s.id == "1"
                                          else replace(s, boxes=(anchor,)) if s.id == "0" else s
                                          for s in dataset.samples))
    # Two detections: one on the anchor's figure, one elsewhere (IoU 0 with the anchor).
    detector = FixedDetector([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [1, 1])
    new, derived, _ = relabel(detector, dataset, previous=previous, anchors=anchors, min_size=40, max_size=40)
    expected = [(0, 0, 10, 12), (20, 20, 30, 30)]  # the anchor (not its detection again) and the new figure
    assert [b.xyxy for b in new.samples[0].boxes] == expected
    assert [b.xyxy for b in new.samples[1].boxes] == expected  # the previous round's other box is replaced
    assert [b.xyxy for b in new.samples[2].boxes] == [(0, 0, 10, 10), (20, 20, 30, 30)]  # no anchor: as without
    # An anchor keeps its own score (ties would leave the order of the anchors to chance).
    assert [d.score for d in derived if d.sample_id == "0"] == [0.97, pytest.approx(0.8)]

    # Where the detector finds nothing, the previous round's boxes stay (they hold the anchors already).
    silent = FixedDetector([[0, 0, 10, 10]], [0.01], [1])
    quiet, kept, _ = relabel(silent, dataset, previous=previous, anchors=anchors, min_size=40, max_size=40)
    assert quiet.samples[1].boxes == previous.samples[1].boxes
    assert sorted(d.score for d in kept if d.sample_id == "1") == [0.0, 0.97]  # the anchor's score, 0 for the rest
    # Without a previous round, an anchor is kept even then.
    alone, _, _ = relabel(silent, dataset, anchors=anchors, min_size=40, max_size=40)
    assert [b.xyxy for b in alone.samples[0].boxes] == [(0, 0, 10, 12)] and alone.samples[2].boxes == ()


def test_a_detection_around_two_kept_figures_is_not_kept(tmp_path: Path) -> None:
    dataset = _collection(tmp_path, [("saint",)])
    # two figures side by side and a box around both, all within half of the best score
    detector = FixedDetector([[0, 0, 38, 38], [2, 2, 12, 36], [24, 2, 36, 36]], [0.9, 0.8, 0.7], [1, 1, 1])
    new, derived, uncertain = relabel(detector, dataset, min_size=40, max_size=40)
    assert [b.xyxy for b in new.samples[0].boxes] == [(2, 2, 12, 36), (24, 2, 36, 36)]
    assert [d.xyxy for d in uncertain] == [(0, 0, 38, 38)]  # the group is left uncertain, not background
    kept, _, _ = relabel(detector, dataset, rule=RelabelRule(drop_groups=False), min_size=40, max_size=40)
    assert len(kept.samples[0].boxes) == 3


def test_an_anchor_around_two_detections_stays(tmp_path: Path) -> None:
    dataset = _collection(tmp_path, [("saint",)])
    anchors = [DerivedBox("0", "saint", 0, 0, 38, 38, mean_activation=0.95, probability=1.0)]
    detector = FixedDetector([[2, 2, 12, 36], [24, 2, 36, 36]], [0.9, 0.8], [1, 1])
    new, _, _ = relabel(detector, dataset, anchors=anchors, min_size=40, max_size=40)
    assert [b.xyxy for b in new.samples[0].boxes] == [(0, 0, 38, 38), (2, 2, 12, 36), (24, 2, 36, 36)]


def test_a_class_the_detector_never_learnt_keeps_its_previous_boxes_and_anchors(tmp_path: Path) -> None:
    dataset = _collection(tmp_path, [("saint", "monk")])
    dataset = replace(dataset, classes=("saint", "dog", "monk"))
    previous = dataset.with_samples((replace(dataset.samples[0], boxes=(Box(3, 3, 13, 33, "monk"),)),))
    anchors = [DerivedBox("0", "monk", 20, 2, 30, 36, mean_activation=0.9, probability=1.0)]
    detector = FixedDetector([[0, 0, 10, 10]], [0.8], [1])  # knows saint and dog, not monk
    new, derived, _ = relabel(detector, dataset, previous, anchors=anchors, min_size=40, max_size=40)
    assert sorted((b.label, b.xyxy) for b in new.samples[0].boxes) == [
        ("monk", (3, 3, 13, 33)), ("monk", (20, 2, 30, 36)), ("saint", (0, 0, 10, 10))]
    assert sorted(d.mean_activation for d in derived if d.label == "monk") == [0.0, 0.9]
