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

import torch
from torchvision.ops import box_area, box_iou

#: Two boxes overlapping this much are the same figure.
SAME_FIGURE_IOU = 0.5


def group_flags(boxes: Sequence[Sequence[float]]) -> list[bool]:
    """For the boxes of one class in one image (xyxy), whether each is a group of two or more of the others."""
    if len(boxes) < 3:  # a group and two figures make three
        return [False] * len(boxes)
    xyxy = torch.tensor([list(b) for b in boxes], dtype=torch.float64)
    cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
    # holds[i, j]: box i holds the centre of box j
    holds = ((xyxy[:, None, 0] <= cx) & (cx <= xyxy[:, None, 2]) & (xyxy[:, None, 1] <= cy) & (cy <= xyxy[:, None, 3]))
    distinct = (box_iou(xyxy, xyxy) < SAME_FIGURE_IOU) & ~holds & ~holds.T
    area = box_area(xyxy)
    flags = []
    for i in range(len(boxes)):
        inside = holds[i] & (area < area[i])
        flags.append(bool(distinct[inside][:, inside].any()))
    return flags
