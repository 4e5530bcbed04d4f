"""Saliency maps as the viewer ships and reads them: 8-bit PNGs at feature resolution, upsampled in the browser.

A map is min-max scaled and rounded to 0..255 at its stored resolution, and the maps of one image and method
are stacked top to bottom in one greyscale PNG. The browser upsamples a map bilinearly to the image's working
grid (``working_size``), scales it to [0, 1] and thresholds it there. :func:`viewer_saliency` is that
computation in Python, step for step and in float64 like JavaScript's numbers, so ``boxes_from_map`` on its
result gives exactly the boxes the viewer draws: the browser tests hold the two to that.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from iconolens.report.overlays import display_size

#: Longer side of the grid on which the viewer thresholds maps and derives boxes (boxes are scaled back to
#: the image's pixels). Small enough to follow a slider live, large enough for small attributes.
WORKING_SIDE = 512
#: Maps stored larger than this on their longer side (D-RISE maps are at image resolution) are shrunk first.
MAX_STORED_SIDE = 128


def working_size(width: int, height: int, max_side: int = WORKING_SIDE) -> tuple[int, int]:
    """``(width, height)`` of the grid maps are thresholded on: the image's own size, or shrunk to ``max_side``."""
    return display_size(int(width), int(height), max_side)


def quantise_maps(raw: np.ndarray) -> np.ndarray:
    """``(T, h, w)`` raw maps -> uint8 maps, each scaled to its own 0..255 (a constant map becomes zeros).

    Non-finite values count as the map's minimum, so a damaged map shows as empty rather than breaking.
    """
    maps = np.asarray(raw, dtype=np.float64)
    if maps.ndim != 3:
        raise ValueError(f"maps must be shaped (T, h, w); got {maps.shape}")
    if max(maps.shape[1:]) > MAX_STORED_SIDE:
        w, h = working_size(maps.shape[2], maps.shape[1], MAX_STORED_SIDE)
        maps = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA) for m in maps]) if len(maps) else \
            np.zeros((0, h, w))
    out = np.zeros(maps.shape, dtype=np.uint8)
    for k, m in enumerate(maps):
        finite = np.isfinite(m)
        if not finite.any():
            continue
        lo, hi = float(m[finite].min()), float(m[finite].max())
        if hi > lo:
            scaled = (np.where(finite, m, lo) - lo) / (hi - lo)
            out[k] = np.rint(scaled * 255).astype(np.uint8)
    return out


def maps_png(maps: np.ndarray) -> bytes:
    """The uint8 ``(T, h, w)`` maps stacked top to bottom as one greyscale PNG (no gamma or colour profile)."""
    t, h, w = maps.shape
    picture = Image.fromarray(np.ascontiguousarray(maps.reshape(t * h, w)), mode="L")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _source_index(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neighbours and weights of bilinear upsampling with half-pixel centres (PyTorch's ``align_corners=False``)."""
    scale = in_size / out_size
    src = scale * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5
    src = np.where(src < 0, 0.0, src)
    low = np.floor(src).astype(np.int64)
    low = np.minimum(low, in_size - 1)
    high = np.where(low < in_size - 1, low + 1, low)
    weight_high = src - low
    return low, high, 1.0 - weight_high, weight_high


def viewer_saliency(quantised: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One uint8 ``(h, w)`` map upsampled to ``size = (width, height)`` and scaled to [0, 1], as the viewer does.

    The arithmetic is the browser's, operation for operation, so both give the same bits.
    """
    values = np.asarray(quantised, dtype=np.float64)
    h, w = values.shape
    width, height = size
    y0, y1, wy0, wy1 = _source_index(height, h)
    x0, x1, wx0, wx1 = _source_index(width, w)
    top = values[y0][:, x0] * wx0[None, :] + values[y0][:, x1] * wx1[None, :]
    bottom = values[y1][:, x0] * wx0[None, :] + values[y1][:, x1] * wx1[None, :]
    up = top * wy0[:, None] + bottom * wy1[:, None]
    lo, hi = up.min(), up.max()
    if hi <= lo:
        return np.zeros_like(up)
    return (up - lo) / (hi - lo)
