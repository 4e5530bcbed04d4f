"""RISE (Petsiuk et al. 2018): saliency as the average of random masks weighted by the score they leave.

Mask ``i``: a ``s x s`` grid of independent Bernoulli(``p``) cells, bilinearly upsampled to
``(s + 1) * ceil(H / s)`` by ``(s + 1) * ceil(W / s)`` pixels and cropped to ``H x W`` at a random offset
of less than one cell, so the soft edges fall anywhere. With ``f_c`` the class probability of the masked
image ``I * M_i`` (masked pixels become 0 in the model's normalised input space, i.e. the dataset's mean
colour),

    saliency_c = 1 / (N * p) * sum_i f_c(I * M_i) * M_i

Every grid and offset is drawn up front from the seed (they are tiny), and the full-size masks are built and
used a batch at a time, so memory does not grow with ``N`` and the result does not depend on the batch size.
The same masks are used for every image of a call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class MaskPlan:
    """The random part of ``N`` RISE masks: binary grids and crop offsets."""

    grids: Tensor  # (N, 1, s, s) in {0, 1}
    offsets: Tensor  # (N, 2) row and column offsets, in pixels
    size: tuple[int, int]
    probability: float

    @property
    def count(self) -> int:
        return int(self.grids.shape[0])


def plan_masks(count: int, grid: int, probability: float, size: tuple[int, int], seed: int) -> MaskPlan:
    """Draw the grids and offsets of ``count`` masks for images of ``size = (H, W)``."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    grids = (torch.rand((count, 1, grid, grid), generator=generator) < probability).float()
    rows = torch.randint(0, cell_h, (count,), generator=generator)
    cols = torch.randint(0, cell_w, (count,), generator=generator)
    return MaskPlan(grids, torch.stack([rows, cols], dim=1), (height, width), probability)


def build_masks(plan: MaskPlan, start: int, stop: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Full-size soft masks ``start:stop`` of the plan, shaped ``(stop - start, 1, H, W)``."""
    height, width = plan.size
    grid = plan.grids.shape[-1]
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    grids = plan.grids[start:stop].to(dtype)
    upsampled = F.interpolate(
        grids, size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear", align_corners=False
    )
    crops = [
        upsampled[i, :, r : r + height, c : c + width]
        for i, (r, c) in enumerate(plan.offsets[start:stop].tolist())
    ]
    return torch.stack(crops)


def _batches(count: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, count, size):
        yield start, min(count, start + size)


def rise_saliency(
    predict: Callable[[Tensor], Tensor],
    images: Tensor,
    plan: MaskPlan,
    class_indices: Tensor,
    *,
    batch_size: int = 32,
    map_size: tuple[int, int] | None = None,
) -> Tensor:
    """RISE maps ``(N, C, h, w)`` for ``images`` ``(N, 3, H, W)``.

    ``predict`` maps a batch of images to class probabilities ``(B, C_all)``. ``batch_size`` is the number
    of masked images per forward pass (at least one mask for every image). ``map_size`` (default: the image size) is the resolution of the
    result; since the saliency is linear in the masks, it is accumulated from area-averaged masks.
    """
    n = images.shape[0]
    height, width = images.shape[-2:]
    map_size = map_size or (height, width)
    per_pass = max(1, batch_size // n)
    saliency = torch.zeros((n, len(class_indices), *map_size), dtype=images.dtype, device=images.device)
    for start, stop in _batches(plan.count, per_pass):
        masks = build_masks(plan, start, stop, images.dtype).to(images.device)  # (m, 1, H, W)
        masked = (images[:, None] * masks[None]).reshape(-1, *images.shape[1:])  # (n*m, 3, H, W)
        probabilities = predict(masked).reshape(n, stop - start, -1)[:, :, class_indices]
        small = masks if tuple(map_size) == (height, width) else F.adaptive_avg_pool2d(masks, map_size)
        saliency += torch.einsum("nmc,mhw->nchw", probabilities, small[:, 0])
    return saliency / (plan.count * plan.probability)
