"""Training-time changes of a painting that keep its figures where they are: colour and scale.

A detector taught on a few hundred paintings learns their palettes and sizes along with their figures. The
collections it is then run on differ in exactly those: faded varnish and bright gouache, monochrome prints and
drawings, figures a tenth or a half of the canvas high. So each training image is shown, at random, with its
brightness, contrast and saturation changed, sometimes in grey, and at another scale, the boxes unchanged (or
scaled with it, by the model's own transform).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from iconolens.errors import BadInputError

_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601, the weights of PIL's "L" conversion


def luma(pixels: Tensor) -> Tensor:
    """The grey of each pixel of ``pixels`` (3 x H x W), 1 x H x W."""
    return (pixels * _LUMA.to(pixels).view(3, 1, 1)).sum(0, keepdim=True)


@dataclass(frozen=True)
class PaintingAugmentation:
    """How far each change goes. ``scales`` multiply the detector's working size (its shorter side)."""

    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.4
    grey: float = 0.1
    scales: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2)

    def __post_init__(self) -> None:
        if not all(0.0 <= v < 1.0 for v in (self.brightness, self.contrast, self.saturation)):
            raise BadInputError("brightness, contrast and saturation changes must be fractions in [0, 1)")
        if not 0.0 <= self.grey <= 1.0:
            raise BadInputError(f"the share of grey images must be in [0, 1], got {self.grey}")
        if not self.scales or min(self.scales) <= 0:
            raise BadInputError("training scales must be one or more positive factors")

    def to_json(self) -> dict:
        return {**asdict(self), "scales": list(self.scales)}

    def colours(self, pixels: Tensor, rng: np.random.Generator) -> Tensor:
        """``pixels`` (3 x H x W in [0, 1]) with brightness, contrast and saturation changed in a random order,
        then, with probability ``grey``, turned grey; clipped to [0, 1]."""
        for change in rng.permutation(3):
            if change == 0:
                pixels = pixels * rng.uniform(1 - self.brightness, 1 + self.brightness)
            elif change == 1:
                mean = luma(pixels).mean()
                pixels = mean + (pixels - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast)
            else:
                grey = luma(pixels)
                pixels = grey + (pixels - grey) * rng.uniform(1 - self.saturation, 1 + self.saturation)
        if rng.random() < self.grey:
            pixels = luma(pixels).expand(3, -1, -1)
        return pixels.clamp(0.0, 1.0)

    def sizes(self, min_size: int, max_size: int) -> tuple[tuple[int, ...], int]:
        """The shorter sides to train at (the model's transform draws one per batch) and the matching cap."""
        return tuple(round(min_size * s) for s in self.scales), round(max_size * max(self.scales))
