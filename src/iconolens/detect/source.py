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
    """``model``: a folder written by ``iconolens detect train``; or ``mtcnn`` with images shrunk to ``size``.
    ``test_flip``: the detector also runs on each image's mirror image, the boxes merged
    (:class:`~iconolens.detect.mirrored.MirroredViews`)."""

    model: Path | None = None
    mtcnn: bool = False
    size: int = 320
    test_flip: bool = False

    def __post_init__(self) -> None:
        if (self.model is None) == (not self.mtcnn):
            raise BadInputError("give either --model DIR (a trained Faster R-CNN) or --mtcnn (the face detector)")

    def open(self, min_score: float = 0.0, device: str = "cpu") -> tuple[Detector, int, int]:
        """The detector on ``device`` and the (min_size, max_size) its images are shrunk to."""
        from iconolens.device import resolve_device

        from iconolens.detect.mirrored import MirroredViews

        where = resolve_device(device)
        if self.mtcnn:
            from iconolens.detect.mtcnn import MTCNNDetector

            detector, min_size, max_size = MTCNNDetector(min_score=min_score), self.size, self.size
        else:
            from iconolens.detect.checkpoint import load_detector

            network, meta = load_detector(self.model, min_score=min_score)
            detector, min_size, max_size = network.to(where), meta.min_size, meta.max_size
        return (MirroredViews(detector) if self.test_flip else detector), min_size, max_size
