"""Self-training: a detector trained on pseudo boxes re-labels its training images, and the next one learns from that.

A detector trained on noisy boxes averages their noise away: it sees thousands of figures and learns what they
share, so its confident detections on the training images are often better boxes than the ones it was taught
with (several per image, tighter, fewer groups). Re-labelling uses only what weak supervision allows: the image
labels decide which classes an image may hold (a box of a class the image is not labelled with is dropped, and
an image labelled with no trained class is a negative); the detector decides where.

For each (image, labelled class) the detections of that class scoring at least ``relative_score`` times the
image's best one, and at least ``min_score``, become its boxes. Where the detector finds nothing above
``min_score`` for a labelled class, the previous round's boxes are kept, so an image never silently turns from
positive into negative. The labelled class's other detections above ``min_score`` that overlap no kept box are
returned as uncertain: the next detector can be told to learn them neither as objects nor as background.
A detection around two or more distinct kept figures is a group (:mod:`iconolens.detect.groups`): it is not kept
but returned as uncertain, so a detector that learnt to box crowds does not teach the next one the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torchvision.ops import box_iou

from iconolens.data.records import Box, Dataset
from iconolens.detect.detections import Detector
from iconolens.detect.evaluation import ScoredBox, detect_collection
from iconolens.detect.groups import SAME_FIGURE_IOU, group_flags
from iconolens.errors import BadInputError
from iconolens.evaluate.boxes import DerivedBox


@dataclass(frozen=True)
class RelabelRule:
    """Which detections become boxes: the best one of each labelled class and those close to it."""

    relative_score: float = 0.5
    min_score: float = 0.05
    max_boxes: int = 20
    drop_groups: bool = True  # a detection around two or more of the kept figures is not kept (detect.groups)

    def __post_init__(self) -> None:
        if not 0.0 <= self.relative_score <= 1.0 or not 0.0 <= self.min_score <= 1.0 or self.max_boxes < 1:
            raise BadInputError("re-labelling needs relative_score and min_score in [0, 1] and max_boxes >= 1")

    def select(self, found: Sequence[ScoredBox], label: str) -> list[ScoredBox]:
        mine = sorted((d for d in found if d.label == label and d.score >= self.min_score), key=lambda d: -d.score)
        if not mine:
            return []
        floor = self.relative_score * mine[0].score
        return [d for d in mine if d.score >= floor][: self.max_boxes]


class Relabelled(NamedTuple):
    """The re-labelled collection, its boxes (for scoring and writing), and the detections left uncertain."""

    dataset: Dataset
    boxes: list[DerivedBox]
    uncertain: list[DerivedBox]


def relabel(
    detector: Detector,
    dataset: Dataset,
    previous: Dataset | None = None,
    rule: RelabelRule = RelabelRule(),
    min_size: int = 320,
    max_size: int = 512,
    anchors: Sequence[DerivedBox] = (),
) -> Relabelled:
    """``dataset`` with its figure boxes replaced by ``detector``'s confident detections of each image's labels.

    ``previous`` (same samples, e.g. the pseudo boxes the detector was trained on) supplies the boxes of an
    (image, class) where the detector finds nothing. ``anchors`` are always kept, with the detections (or,
    where there are none, the previous boxes) that overlap none of them. Returns the new collection, the boxes as
    :class:`DerivedBox` (score = detection score, an anchor's own score for an anchor), for scoring and
    writing as COCO detections, and the uncertain detections (labelled classes, above ``rule.min_score``, not
    kept, overlapping no kept box).
    """
    known = set(detector.classes)
    before = {s.id: s for s in previous.samples} if previous is not None else {}
    anchored: dict[tuple[str, str], list[DerivedBox]] = {}
    for anchor in anchors:
        anchored.setdefault((anchor.sample_id, anchor.label), []).append(anchor)
    predictions, _ = detect_collection(detector, dataset, min_size, max_size)
    samples, derived, uncertain = [], [], []
    for sample, found in zip(dataset.samples, predictions):
        boxes: list[Box] = []
        for label in sample.labels:
            # a class the detector never learnt is one it finds nothing of: its previous boxes and anchors stay
            chosen = rule.select(found, label) if label in known else []
            fixed = anchored.get((sample.id, label), [])
            if chosen:
                found_here = [(d.xyxy, d.score) for d in chosen]
            elif sample.id in before:  # ranked below every detection
                found_here = [(b.xyxy, 0.0) for b in before[sample.id].boxes_of(label, "figure")]
            else:
                found_here = []
            if found_here and fixed:  # what an anchor already holds is not added again
                overlap = box_iou(torch.tensor([xyxy for xyxy, _ in found_here]), torch.tensor([b.xyxy for b in fixed]))
                found_here = [f for f, row in zip(found_here, overlap) if float(row.max()) < SAME_FIGURE_IOU]
            if rule.drop_groups and found_here:  # anchors are certain figures and always stay
                flags = group_flags([b.xyxy for b in fixed] + [xyxy for xyxy, _ in found_here])[len(fixed):]
                groups = [f for f, flag in zip(found_here, flags) if flag]
                found_here = [f for f, flag in zip(found_here, flags) if not flag]
                uncertain += [DerivedBox(sample.id, label, *xyxy, mean_activation=score, probability=1.0)
                              for xyxy, score in groups]
            derived += fixed
            derived += [DerivedBox(sample.id, label, *xyxy, mean_activation=score, probability=1.0)
                        for xyxy, score in found_here]
            kept = [b.xyxy for b in fixed] + [xyxy for xyxy, _ in found_here]
            boxes += [Box(*xyxy, label=label) for xyxy in kept]
            left = [d for d in found if d.label == label and d.score >= rule.min_score and d not in chosen]
            if left and kept:
                overlap = box_iou(torch.tensor([d.xyxy for d in left]), torch.tensor(kept)).max(dim=1).values
                left = [d for d, most in zip(left, overlap) if float(most) < SAME_FIGURE_IOU]
            uncertain += [DerivedBox(sample.id, label, *d.xyxy, mean_activation=d.score, probability=1.0) for d in left]
        samples.append(replace(sample, boxes=tuple(boxes)))
    return Relabelled(dataset.with_samples(tuple(samples)), derived, uncertain)
