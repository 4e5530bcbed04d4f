"""Group boxes: one box around several figures is not a figure.

A detector taught from pseudo boxes learns to box crowds: on People-Art's val split the faces chain's detectors
put about as many confident boxes around two or more people as around one, and each self-training round that
keeps them teaches the next detector more of them. Among the boxes of one class in one image, a box that holds
the centres of two smaller boxes that are distinct figures (they overlap at IoU below 0.5, and neither holds
the other's centre) is a group of them, whatever its score. The rule needs no threshold of its own, only the
IoU at which two boxes are taken for the same figure.
"""

from __future__ import annotations

from collections.abc import Sequence

XYXY = Sequence[float]

#: Two boxes overlapping this much are the same figure.
SAME_FIGURE_IOU = 0.5


def _area(box: XYXY) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _iou(a: XYXY, b: XYXY) -> float:
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _holds_centre(box: XYXY, other: XYXY) -> bool:
    cx, cy = (other[0] + other[2]) / 2, (other[1] + other[3]) / 2
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def _distinct(a: XYXY, b: XYXY) -> bool:
    return _iou(a, b) < SAME_FIGURE_IOU and not _holds_centre(a, b) and not _holds_centre(b, a)


def group_flags(boxes: Sequence[XYXY]) -> list[bool]:
    """For the boxes of one class in one image (xyxy), whether each is a group of two or more of the others."""
    flags = []
    for i, box in enumerate(boxes):
        inside = [other for j, other in enumerate(boxes)
                  if j != i and _area(other) < _area(box) and _holds_centre(box, other)]
        flags.append(any(_distinct(a, b) for k, a in enumerate(inside) for b in inside[k + 1:]))
    return flags
