"""Which detector a stage runs, as plain data: a trained Faster R-CNN folder or the pretrained MTCNN face detector.

Stages are given a :class:`DetectorSource` rather than a network when each Ray worker must open its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iconolens.detect.detections import Detector
from iconolens.errors import BadInputError


@dataclass(frozen=True)
class DetectorSource:
    """``model``: a folder written by ``iconolens detect train``; or ``mtcnn`` with images shrunk to ``size``."""

    model: Path | None = None
    mtcnn: bool = False
    size: int = 320

    def __post_init__(self) -> None:
        if (self.model is None) == (not self.mtcnn):
            raise BadInputError("give either --model DIR (a trained Faster R-CNN) or --mtcnn (the face detector)")

    def open(self, min_score: float = 0.0, device: str = "cpu") -> tuple[Detector, int, int]:
        """The detector on ``device`` and the (min_size, max_size) its images are shrunk to."""
        from iconolens.device import resolve_device

        where = resolve_device(device)
        if self.mtcnn:
            from iconolens.detect.mtcnn import MTCNNDetector

            return MTCNNDetector(min_score=min_score), self.size, self.size
        from iconolens.detect.checkpoint import load_detector

        detector, meta = load_detector(self.model, min_score=min_score)
        return detector.to(where), meta.min_size, meta.max_size
