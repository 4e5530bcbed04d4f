from __future__ import annotations

import pytest
import torch

pytest.importorskip("facenet_pytorch")

from iconolens.detect.detections import Detector  # noqa: E402
from iconolens.detect.mtcnn import MTCNNDetector  # noqa: E402


def test_blank_images_have_no_faces_and_keep_the_protocol_shape() -> None:
    detector = MTCNNDetector()
    assert isinstance(detector, Detector) and detector.classes == ("face",)
    found = detector(torch.full((2, 3, 96, 128), 0.5))
    assert len(found) == 2
    for d in found:
        assert len(d) == 0
        assert d.boxes.shape == (0, 4) and d.class_probs.shape == (0, 1) and d.objectness.shape == (0,)
