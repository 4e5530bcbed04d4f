"""Tiny detectors with known behaviour, for testing D-RISE and the measures without a trained network."""

from __future__ import annotations

import pytest
import torch

from iconolens.detect.detections import Detections


class RegionDetector:
    """Always reports one box; its objectness is the mean brightness of a fixed ``region`` (y0, y1, x0, x1).

    Masks that keep the region bright make the detection confident, so a correct D-RISE map must put its mass
    on that region and nowhere else.
    """

    classes = ("background", "thing")

    def __init__(self, box=(8.0, 8.0, 24.0, 24.0), region=(8, 16, 8, 16)) -> None:
        self.box = torch.tensor([box])
        self.region = region
        self.calls = 0

    def __call__(self, images: torch.Tensor) -> list[Detections]:
        self.calls += images.shape[0]
        y0, y1, x0, x1 = self.region
        brightness = images[:, :, y0:y1, x0:x1].mean(dim=(1, 2, 3))
        return [
            Detections(self.box.clone(), b.reshape(1), torch.tensor([[0.0, 1.0]]), b.reshape(1))
            for b in brightness
        ]


class BlindDetector:
    """Never finds anything."""

    classes = ("background", "thing")

    def __call__(self, images: torch.Tensor) -> list[Detections]:
        return [Detections.empty(2) for _ in range(images.shape[0])]


@pytest.fixture
def region_detector() -> RegionDetector:
    return RegionDetector()


@pytest.fixture
def blind_detector() -> BlindDetector:
    return BlindDetector()
