"""What a detector says about one image, and the protocol every detector adapter follows.

D-RISE, the detector measures and the evaluation speak only to :class:`Detector`: a callable taking a batch of
images ``(B, 3, H, W)`` with values in [0, 1] and returning one :class:`Detections` per image, in that image's
pixel coordinates. Each detection carries a class-probability vector (not just the winning label), since D-RISE
compares detections by the cosine of these vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from iconolens.errors import BadInputError


@dataclass(frozen=True)
class Detections:
    """``K`` detections of one image.

    ``boxes`` (K, 4) xyxy pixels; ``scores`` (K,) the detector's confidence; ``class_probs`` (K, C) a probability
    vector over the detector's ``classes`` (for Faster R-CNN this includes the background class);
    ``objectness`` (K,) where the model has one, else None (D-RISE then uses 1); ``classes`` (K,) the index into
    the detector's classes each box was reported for, when that is not simply the most probable class (Faster
    R-CNN reports a proposal once per class passing its threshold, and the background may be the most probable).
    """

    boxes: Tensor
    scores: Tensor
    class_probs: Tensor
    objectness: Tensor | None = None
    classes: Tensor | None = None

    def __post_init__(self) -> None:
        k = self.boxes.shape[0]
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise BadInputError(f"detection boxes must be shaped (K, 4), got {tuple(self.boxes.shape)}")
        if self.scores.shape != (k,) or self.class_probs.ndim != 2 or self.class_probs.shape[0] != k:
            raise BadInputError(
                f"detections disagree in count: {k} boxes, scores {tuple(self.scores.shape)}, "
                f"class probabilities {tuple(self.class_probs.shape)}"
            )
        if self.objectness is not None and self.objectness.shape != (k,):
            raise BadInputError(f"objectness must be shaped ({k},), got {tuple(self.objectness.shape)}")
        if self.classes is not None and self.classes.shape != (k,):
            raise BadInputError(f"class indices must be shaped ({k},), got {tuple(self.classes.shape)}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.class_probs.shape[1])

    @property
    def labels(self) -> Tensor:
        """Index of each detection's class: the reported one, else the most probable."""
        if self.classes is not None:
            return self.classes
        return self.class_probs.argmax(dim=1) if len(self) else torch.zeros(0, dtype=torch.long)

    def objectness_or_ones(self) -> Tensor:
        if self.objectness is not None:
            return self.objectness
        return torch.ones(len(self), dtype=self.class_probs.dtype, device=self.class_probs.device)

    def select(self, index: Tensor | Sequence[int]) -> "Detections":
        """The detections at ``index`` (a boolean mask or integer indices)."""
        index = torch.as_tensor(index, device=self.boxes.device)
        return Detections(
            boxes=self.boxes[index],
            scores=self.scores[index],
            class_probs=self.class_probs[index],
            objectness=None if self.objectness is None else self.objectness[index],
            classes=None if self.classes is None else self.classes[index],
        )

    def scaled(self, sx: float, sy: float) -> "Detections":
        """The same detections with box coordinates multiplied by (sx, sy), e.g. back to the original image."""
        factor = torch.tensor([sx, sy, sx, sy], dtype=self.boxes.dtype, device=self.boxes.device)
        return Detections(self.boxes * factor, self.scores, self.class_probs, self.objectness, self.classes)

    @staticmethod
    def empty(num_classes: int) -> "Detections":
        return Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, num_classes), None)


def targets_from_boxes(boxes: Tensor | Sequence[Sequence[float]], labels: Sequence[int], num_classes: int) -> Detections:
    """Targets for D-RISE given as boxes and class indices (e.g. missed ground truth): one-hot class vectors."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels_t = torch.as_tensor(list(labels), dtype=torch.long)
    if labels_t.numel() != boxes.shape[0]:
        raise BadInputError(f"{boxes.shape[0]} target boxes but {labels_t.numel()} class indices")
    if labels_t.numel() and (labels_t.min() < 0 or labels_t.max() >= num_classes):
        raise BadInputError(f"target class index {int(labels_t.max())} is outside the detector's {num_classes} classes")
    probs = torch.nn.functional.one_hot(labels_t, num_classes).to(torch.float32)
    return Detections(boxes, torch.ones(boxes.shape[0]), probs, None)


@runtime_checkable
class Detector(Protocol):
    """Anything that detects objects in a batch of images with values in [0, 1].

    ``classes`` names the entries of every detection's class-probability vector.
    """

    classes: tuple[str, ...]

    def __call__(self, images: Tensor) -> list[Detections]: ...
