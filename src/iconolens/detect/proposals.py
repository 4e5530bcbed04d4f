"""Class-agnostic box proposals for weakly supervised detection: a dense, deterministic multi-scale grid.

Multiple-instance learning picks, among an image's proposals, the ones that explain its labels, so the proposals
only need to contain a box close to every object; they need not rank it. A grid does that without learning and
in microseconds, where selective search takes seconds per painting on a CPU.

The grid, in original-image pixels for an image of ``W x H``:

* a box of scale ``s`` and aspect ratio ``r`` (height / width; ``r > 1`` is tall, as a standing figure) is
  ``w = s * sqrt(W * H) / sqrt(r)`` wide and ``h = s * sqrt(W * H) * sqrt(r)`` high, so ``w * h = s^2 * W * H``
  (scales are relative to the image, ratios are in pixels), each side clipped to the image;
* its positions step by ``stride * w`` across and ``stride * h`` down, evenly spread so that the first box
  touches the left/top edge and the last the right/bottom one: ``n = ceil((W - w) / (stride * w)) + 1``
  positions ``x0 = i * (W - w) / (n - 1)``;
* the whole image is always a proposal (unless the caller's boxes alone fill the cap);
* coordinates are rounded to whole pixels and duplicates (clipped large boxes often coincide) kept once;
* when there are more than ``max_proposals``, the stride is widened by a constant factor for every scale
  until they fit, so coverage thins out evenly instead of losing a whole scale; once neighbouring boxes would
  no longer touch (stride 1), the smallest shapes are dropped instead.

Boxes given by the caller (e.g. around saliency-map peaks) come first and are never dropped by the cap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from iconolens.errors import BadInputError

# The cap is met by widening the stride by this factor until the grid fits.
_STRIDE_GROWTH = 1.05
# Beyond this, neighbouring boxes of one shape would leave gaps: the smallest shapes are dropped instead.
_MAX_STRIDE = 1.0


@dataclass(frozen=True)
class ProposalGrid:
    """How dense the grid is.

    ``scales``: box sides relative to ``sqrt(W * H)``; ``aspect_ratios``: height / width in pixels;
    ``stride``: step between neighbouring positions as a fraction of the box's own side (0.5 = half
    overlapping); ``max_proposals``: the cap (caller boxes included, when they fit); ``min_side``:
    boxes narrower or lower than this many pixels are dropped (tiny images).
    """

    scales: tuple[float, ...] = (0.12, 0.17, 0.24, 0.34, 0.48, 0.68, 0.96)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)
    stride: float = 0.5
    max_proposals: int = 1500
    min_side: float = 4.0

    def __post_init__(self) -> None:
        if not self.scales or any(not 0 < s <= 2 for s in self.scales):
            raise BadInputError(f"proposal scales must be in (0, 2], got {self.scales}")
        if not self.aspect_ratios or any(r <= 0 for r in self.aspect_ratios):
            raise BadInputError(f"proposal aspect ratios must be positive, got {self.aspect_ratios}")
        if not self.stride > 0:
            raise BadInputError(f"the proposal stride must be positive, got {self.stride}")
        if self.max_proposals < 1:
            raise BadInputError(f"at least one proposal is needed, got max_proposals={self.max_proposals}")

    def to_json(self) -> dict[str, object]:
        return {"scales": list(self.scales), "aspect_ratios": list(self.aspect_ratios), "stride": self.stride,
                "max_proposals": self.max_proposals, "min_side": self.min_side}


def _positions(extent: float, side: float, step: float) -> np.ndarray:
    """Evenly spread left (top) edges of a box of ``side`` pixels in ``extent``, at most ``step`` apart."""
    room = extent - side
    if room <= 1e-9:
        return np.zeros(1)
    count = math.ceil(room / step - 1e-9) + 1
    return np.linspace(0.0, room, count)


def _grid(width: int, height: int, grid: ProposalGrid, stride: float) -> np.ndarray:
    reference = math.sqrt(width * height)
    parts = [np.array([[0.0, 0.0, width, height]])]
    for scale in sorted(grid.scales, reverse=True):
        for ratio in grid.aspect_ratios:
            w = min(float(width), scale * reference / math.sqrt(ratio))
            h = min(float(height), scale * reference * math.sqrt(ratio))
            if w < grid.min_side or h < grid.min_side:
                continue
            xs = _positions(width, w, stride * w)
            ys = _positions(height, h, stride * h)
            x0, y0 = np.meshgrid(xs, ys)
            x0, y0 = x0.ravel(), y0.ravel()
            parts.append(np.stack([x0, y0, x0 + w, y0 + h], axis=1))
    return np.concatenate(parts)


def _clipped_unique(boxes: np.ndarray, width: int, height: int, min_side: float) -> np.ndarray:
    """Boxes rounded to whole pixels, clipped to the image, without degenerate ones or repeats (first kept)."""
    boxes = np.rint(boxes)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    boxes = boxes[side >= min(min_side, width, height)]
    if len(boxes) == 0:
        return boxes.reshape(0, 4)
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]


def grid_proposals(
    width: int,
    height: int,
    grid: ProposalGrid = ProposalGrid(),
    extra: Sequence[Sequence[float]] | np.ndarray | Tensor | None = None,
) -> Tensor:
    """(R, 4) float32 proposals ``(x0, y0, x1, y1)`` in pixels of a ``width x height`` image, half-open.

    ``extra`` boxes (same convention) come first, clipped; the grid fills the rest of ``grid.max_proposals``.
    The result depends only on the arguments.
    """
    if width < 1 or height < 1:
        raise BadInputError(f"cannot place proposals in an image of {width} x {height} pixels")
    given = np.zeros((0, 4))
    if extra is not None:
        given = np.asarray(extra.detach().cpu().numpy() if isinstance(extra, Tensor) else extra, dtype=np.float64)
        if given.size == 0:
            given = np.zeros((0, 4))
        if given.ndim != 2 or given.shape[1] != 4 or not np.isfinite(given).all():
            raise BadInputError("extra proposals must be finite (x0, y0, x1, y1) boxes")
        given = _clipped_unique(given, width, height, 1.0)
    room = max(grid.max_proposals - len(given), 0)
    stride = grid.stride
    while True:
        boxes = _clipped_unique(_grid(width, height, grid, stride), width, height, grid.min_side)
        if len(given):
            repeated = (boxes[:, None, :] == given[None, :, :]).all(axis=2).any(axis=1)
            boxes = boxes[~repeated]
        if len(boxes) <= room:
            break
        if stride * _STRIDE_GROWTH > _MAX_STRIDE:
            boxes = boxes[:room]  # ordered from large to small shapes
            break
        stride *= _STRIDE_GROWTH
    return torch.from_numpy(np.concatenate([given, boxes]).astype(np.float32))
