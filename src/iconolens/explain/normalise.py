"""Raw maps to pictures: bilinear upsampling to the image size, then per-map min-max scaling to [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def normalise_maps(raw: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """``(N, C, h, w)`` raw maps -> ``(N, C, H, W)`` float32 in [0, 1]; a constant map becomes zeros.

    Upsampling happens before scaling, so the scaled map's extremes are those of the picture shown.
    """
    maps = torch.as_tensor(raw).float()
    if maps.ndim != 4:
        raise ValueError(f"maps must be shaped (N, C, h, w); got {tuple(maps.shape)}")
    if size is not None and tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
    low = maps.amin(dim=(2, 3), keepdim=True)
    span = maps.amax(dim=(2, 3), keepdim=True) - low
    flat = span <= 0
    return torch.where(flat, torch.zeros_like(maps), (maps - low) / torch.where(flat, torch.ones_like(span), span))
