"""Several boxes per map: one per salient instance of the class, not one around the whole foreground.

One box per (image, class) cannot be right for group scenes: a painting with five people has five person
boxes, and a single threshold gives either one box around the whole group (low threshold) or a box around
the most discriminative part of the strongest figure only (high threshold; the map peaks on the face, the
expert box holds the whole figure). Here each figure is found through its own peak:

1. peaks are the map's local maxima (a flat plateau of equal maximal values is one peak), kept when at least
   ``relative_height`` times the map's maximum;
2. peaks closer than ``min_distance`` (a fraction of the map's longer side, so the same at any resolution)
   are merged into the higher one: they are taken as two bumps of one figure;
3. each peak grows into its own region by competitive flooding from the peaks down (a marker watershed:
   every pixel climbs the steepest ascent to a local maximum, and the basins of weak or unkept maxima join the
   neighbour they meet over the highest pass), so two neighbouring figures are separated at the valley
   between them;
4. a region keeps the pixels at or above ``region_fraction`` times its own peak's height that are connected
   to the peak: the threshold is relative to each figure, so a weakly activated figure still gets a box of
   its full extent rather than none, and a strong one does not swallow its surroundings;
5. one box per region, scored by the region's mean activation; boxes overlapping a better one by IoU above
   ``nms_iou`` are suppressed (torchvision's NMS) and at most ``max_instances`` are kept.

A constant map has nothing that sets one place apart from another: an all-zero map (which is what min-max
normalisation makes of any constant map) gives no box; a constant positive map is one plateau and gives one
box over the whole map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torchvision.ops import nms

from iconolens.errors import BadInputError

DEFAULT_MIN_DISTANCE = 0.1
DEFAULT_RELATIVE_HEIGHT = 0.3
DEFAULT_REGION_FRACTION = 0.2
DEFAULT_NMS_IOU = 0.5
DEFAULT_MAX_INSTANCES = 20

_EIGHT = np.ones((3, 3), dtype=bool)
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_HALF_NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))  # each unordered pair of 8-neighbours once


@dataclass(frozen=True)
class MapBox:
    """A box drawn on a map (pixels, half-open) and the mean activation of the pixels it surrounds.

    ``peak_height`` is the map's value at the peak the box was grown from (``None`` for boxes drawn around a
    thresholded foreground, which have no single peak).
    """

    x0: int
    y0: int
    x1: int
    y1: int
    mean_activation: float
    peak_height: float | None = None

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise BadInputError(f"{name} must be between 0 and 1, got {value}")


def check_instance_parameters(
    min_distance: float, relative_height: float, region_fraction: float, nms_iou: float, max_instances: int
) -> None:
    """Refuse parameters outside their meaningful range, in one sentence."""
    _check_fraction("min_distance", min_distance)
    _check_fraction("relative_height", relative_height)
    _check_fraction("region_fraction", region_fraction)
    _check_fraction("nms_iou", nms_iou)
    if max_instances < 1:
        raise BadInputError(f"max_instances must be at least 1, got {max_instances}")


def _shifted(padded: np.ndarray, dy: int, dx: int, height: int, width: int) -> np.ndarray:
    """The neighbour at offset (dy, dx) of every pixel, from an array padded by one on each side."""
    return padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]


def _basins(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Every pixel's basin: the flat-topped set of pixels without a higher neighbour that it climbs to.

    Returns the basin of each pixel, the labels of the flat tops themselves (0 elsewhere) and their number.
    """
    height, width = values.shape
    top = values >= ndimage.maximum_filter(values, footprint=_EIGHT, mode="constant", cval=-np.inf)
    tops, n_tops = ndimage.label(top, structure=_EIGHT)
    padded = np.pad(values, 1, constant_values=-np.inf)
    best = np.full_like(values, -np.inf)
    step = np.zeros(values.shape, dtype=np.int64)
    for dy, dx in _NEIGHBOURS:
        neighbour = _shifted(padded, dy, dx, height, width)
        higher = neighbour > best
        best[higher] = neighbour[higher]
        step[higher] = dy * width + dx
    flat = np.arange(values.size, dtype=np.int64)
    parent = np.where(top.ravel(), flat, flat + step.ravel())
    while True:  # pointer jumping: each round halves the remaining climb
        jumped = parent[parent]
        if np.array_equal(jumped, parent):
            break
        parent = jumped
    return tops.ravel()[parent].reshape(values.shape), tops, n_tops


def _shelves(values: np.ndarray, tops: np.ndarray, n_tops: int) -> np.ndarray:
    """Which flat tops are not maxima: an equal-valued pixel beside them climbs on to something higher."""
    height, width = values.shape
    shelf = np.zeros(n_tops + 1, dtype=bool)
    padded_values = np.pad(values, 1, constant_values=np.nan)
    padded_tops = np.pad(tops, 1)
    off_top = tops == 0
    for dy, dx in _NEIGHBOURS:
        beside = _shifted(padded_tops, dy, dx, height, width)
        same = off_top & (beside > 0) & (_shifted(padded_values, dy, dx, height, width) == values)
        shelf[beside[same]] = True
    return shelf[1:]


def _passes(basins: np.ndarray, values: np.ndarray, n_basins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pair of touching basins, the height of the highest pass between them (pairs a < b)."""
    height, width = values.shape
    keys, heights = [], []
    padded_basins = np.pad(basins, 1)
    padded_values = np.pad(values, 1, constant_values=-np.inf)
    for dy, dx in _HALF_NEIGHBOURS:
        other = _shifted(padded_basins, dy, dx, height, width)
        border = (other > 0) & (other != basins)
        a, b = basins[border], other[border]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        keys.append(lo.astype(np.int64) * (n_basins + 1) + hi)
        heights.append(np.minimum(values[border], _shifted(padded_values, dy, dx, height, width)[border]))
    key = np.concatenate(keys)
    level = np.concatenate(heights)
    if key.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    order = np.argsort(key, kind="stable")
    key, level = key[order], level[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    unique = key[starts]
    return unique // (n_basins + 1), unique % (n_basins + 1), np.maximum.reduceat(level, starts)


def _flood(n_basins: int, seeds: np.ndarray, first: np.ndarray, second: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Each basin's instance (0 for none): basins join over their highest passes first, and two basins
    seeded by different instances never join, so a pass between two figures stays a border."""
    root = np.arange(n_basins + 1)
    owner = seeds.copy()

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for k in np.argsort(-level, kind="stable"):
        a, b = find(int(first[k])), find(int(second[k]))
        if a == b:
            continue
        if owner[a] and owner[b] and owner[a] != owner[b]:
            continue
        root[b] = a
        owner[a] = owner[a] or owner[b]
    return np.array([owner[find(i)] for i in range(n_basins + 1)])


def instance_boxes(
    saliency: np.ndarray,
    *,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    relative_height: float = DEFAULT_RELATIVE_HEIGHT,
    region_fraction: float = DEFAULT_REGION_FRACTION,
    nms_iou: float = DEFAULT_NMS_IOU,
    max_instances: int = DEFAULT_MAX_INSTANCES,
) -> list[MapBox]:
    """One box per salient instance in a normalised ``(H, W)`` map, best (highest mean activation) first.

    The defaults are meant to hold for any collection, since none of them is a number of pixels:

    * ``min_distance=0.1`` of the longer side: maps come from feature grids of 7 to 14 cells a side, where
      two local maxima are at least two cells apart (0.14 to 0.29 of the side), so 0.1 never merges two
      peaks the network itself produced; it merges ripples nearer than that (smooth upsampling, maps made
      at image resolution such as RISE's);
    * ``relative_height=0.3``: a figure counts when its map reaches 30% of the strongest figure's, a level
      above the 0.2 at which regions end, so a kept peak is more than the fringe of a stronger region;
      lower it to trade precision for recall;
    * ``region_fraction=0.2``: 20% of the peak is the threshold Zhou et al. (2016) used to draw CAM boxes,
      applied here to each instance's own peak instead of the map's maximum;
    * ``nms_iou=0.5``: a box overlapping a better one by more than the IoU at which detections are matched
      could only duplicate that box's match;
    * ``max_instances=20``: more than the 16 separate peaks a 7 x 7 feature grid can hold, and a bound on
      what a noisy map costs; raise it for crowds on finer maps.
    """
    values = np.asarray(saliency, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise BadInputError(f"a saliency map must be a non-empty (H, W) array, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise BadInputError("the saliency map holds NaN or infinite values")
    check_instance_parameters(min_distance, relative_height, region_fraction, nms_iou, max_instances)
    highest = float(values.max())
    if highest <= 0.0:
        return []
    height, width = values.shape

    basins, tops, n_tops = _basins(values)
    on_top = tops > 0
    which = tops[on_top] - 1
    top_height = np.zeros(n_tops)
    top_height[which] = values[on_top]  # a flat top has one value
    top_rows, top_cols = np.nonzero(on_top)
    size = np.bincount(which, minlength=n_tops)
    centre = np.stack([np.bincount(which, top_rows, n_tops), np.bincount(which, top_cols, n_tops)], axis=1)
    centre /= size[:, None]
    is_peak = ~_shelves(values, tops, n_tops) & (top_height >= relative_height * highest)

    # Highest peaks first; a peak within min_distance of a kept one joins it.
    radius = min_distance * max(height, width)
    candidates = np.flatnonzero(is_peak)
    candidates = candidates[np.lexsort((candidates, -top_height[candidates]))]
    seeds = np.zeros(n_tops + 1, dtype=np.int64)
    kept: list[int] = []
    kept_centres = np.empty((candidates.size, 2))
    for top in candidates:
        if kept and radius > 0:
            offsets = kept_centres[:len(kept)] - centre[top]
            near = np.flatnonzero(np.hypot(offsets[:, 0], offsets[:, 1]) < radius)
            if near.size:
                seeds[top + 1] = near[0] + 1  # the highest kept peak nearby
                continue
        kept_centres[len(kept)] = centre[top]
        kept.append(int(top))
        seeds[top + 1] = len(kept)
    if not kept:
        return []

    owner = _flood(n_tops, seeds, *_passes(basins, values, n_tops))
    instance = owner[basins]
    found: list[MapBox] = []
    for label, where in enumerate(ndimage.find_objects(instance), start=1):
        if where is None:
            continue
        peak = float(top_height[kept[label - 1]])
        patch = values[where]
        inside = (instance[where] == label) & (patch >= region_fraction * peak)
        parts, _ = ndimage.label(inside, structure=_EIGHT)
        own_tops = np.isin(tops[where], np.flatnonzero(seeds == label))
        region = np.isin(parts, np.setdiff1d(parts[own_tops], [0]))
        if not region.any():
            continue
        rows = np.flatnonzero(region.any(axis=1))
        cols = np.flatnonzero(region.any(axis=0))
        y0, x0 = where[0].start + int(rows[0]), where[1].start + int(cols[0])
        y1, x1 = where[0].start + int(rows[-1]) + 1, where[1].start + int(cols[-1]) + 1
        found.append(MapBox(x0, y0, x1, y1, float(patch[region].mean()), peak))
    if not found:
        return []
    boxes = torch.tensor([b.xyxy for b in found], dtype=torch.float64)
    scores = torch.tensor([b.mean_activation for b in found], dtype=torch.float64)
    order = nms(boxes, scores, nms_iou).tolist()
    return [found[i] for i in order[:max_instances]]
