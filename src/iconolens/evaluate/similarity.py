"""How alike two batches of saliency maps are, image by image: rank correlation, SSIM and HOG correlation.

These are the measures of the model parameter randomisation test (Adebayo et al. 2018): each compares
map ``i`` of one batch with map ``i`` of the other, both ``(N, H, W)`` at the same size, and returns ``N``
values. Spearman looks only at the order of the pixels, SSIM at local brightness, contrast and structure,
and HOG at the layout of the map's edges, so a map can keep its shape under one and not the others.

A map without variation (constant) has no ranking and no edges. Its correlation with another map is
taken as 0 (it shares nothing with it) and with another constant map as 1 (nothing tells them apart),
so averages never contain NaN.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve1d
from scipy.stats import rankdata

#: Wang et al. (2004): Gaussian window of standard deviation 1.5 over 11 x 11 pixels, K1 = 0.01, K2 = 0.03.
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"maps must be two batches shaped (N, H, W) alike; got {a.shape} and {b.shape}")
    return a, b


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``x`` with the same row of ``y``; constant rows as the module says."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    flat_x = x.max(axis=1) == x.min(axis=1)
    flat_y = y.max(axis=1) == y.min(axis=1)
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    r = np.clip(np.nan_to_num(r), -1.0, 1.0)
    return np.where(flat_x & flat_y, 1.0, np.where(flat_x | flat_y, 0.0, r))


def ranks(maps: np.ndarray) -> np.ndarray:
    """``(N, H*W)`` ranks of each map's pixels, ties sharing their average rank (as scipy's Spearman does).

    Spearman's correlation is the Pearson correlation of these; a caller comparing one map with many
    ranks it once.
    """
    maps = np.asarray(maps, dtype=np.float64)
    return rankdata(maps.reshape(len(maps), -1), axis=1)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps."""
    a, b = _pairs(a, b)
    return pearson_rows(ranks(a), ranks(b))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The 1-D Gaussian weights (summing to 1) whose outer product is SSIM's window."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    weights = np.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def _window_size(height: int, width: int) -> int:
    """11, or the largest odd size that fits a smaller map."""
    size = min(SSIM_WINDOW, height, width)
    return size if size % 2 else size - 1


def _local_mean(maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Gaussian-weighted mean of every window lying wholly inside the map (no padding)."""
    radius = len(weights) // 2
    out = convolve1d(maps, weights, axis=1, mode="constant")
    out = convolve1d(out, weights, axis=2, mode="constant")
    height, width = maps.shape[1:]
    return out[:, radius: height - radius, radius: width - radius]


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Mean structural similarity (Wang et al. 2004) of each pair of maps, over every window inside it.

    ``SSIM = (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))`` with local
    Gaussian-weighted means, variances and covariance, ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2`` and ``L`` the
    ``data_range`` of the maps (1 for maps scaled to [0, 1]). Windows are 11 x 11 (smaller on maps
    smaller than that) and never cross the border, so no padding enters the mean.
    """
    a, b = _pairs(a, b)
    size = _window_size(*a.shape[1:])
    if size < 1:
        raise ValueError("maps must be at least one pixel on each side")
    weights = gaussian_window(size)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_a = _local_mean(a, weights)
    mu_b = _local_mean(b, weights)
    var_a = _local_mean(a * a, weights) - mu_a**2
    var_b = _local_mean(b * b, weights) - mu_b**2
    cov = _local_mean(a * b, weights) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return index.reshape(index.shape[0], -1).mean(axis=1)


#: Dalal and Triggs (2005): 8 x 8 pixel cells, 9 unsigned orientation bins, blocks of 2 x 2 cells.
HOG_CELL = 8
HOG_BINS = 9
HOG_BLOCK = 2


def hog(maps: np.ndarray, cell: int = HOG_CELL, bins: int = HOG_BINS, block: int = HOG_BLOCK) -> np.ndarray:
    """Histogram-of-oriented-gradients descriptors ``(N, D)`` of ``(N, H, W)`` maps.

    Central-difference gradients; each pixel votes its gradient magnitude into the two nearest of ``bins``
    unsigned orientations over [0, 180) degrees; cells of ``cell x cell`` pixels (the map is cropped to whole
    cells, and cells shrink on maps too small for one block of them); overlapping blocks of
    ``block x block`` cells, one cell apart, each normalised with L2-Hys (L2, clipped at 0.2, L2 again).
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3:
        raise ValueError(f"maps must be shaped (N, H, W); got {maps.shape}")
    count, height, width = maps.shape
    cell = max(1, min(cell, height // block, width // block))
    gy = np.zeros_like(maps)
    gx = np.zeros_like(maps)
    gy[:, 1:-1] = maps[:, 2:] - maps[:, :-2]
    gx[:, :, 1:-1] = maps[:, :, 2:] - maps[:, :, :-2]
    rows, cols = height // cell, width // cell
    gy, gx = gy[:, : rows * cell, : cols * cell], gx[:, : rows * cell, : cols * cell]
    magnitude = np.hypot(gx, gy)
    position = (np.rad2deg(np.arctan2(gy, gx)) % 180.0) / (180.0 / bins) - 0.5  # bin k centred at k + 0.5
    low = np.floor(position).astype(np.int64)
    share_high = position - low
    image = np.arange(count)[:, None, None]
    row = (np.arange(rows * cell) // cell)[None, :, None]
    col = (np.arange(cols * cell) // cell)[None, None, :]
    cell_index = ((image * rows + row) * cols + col) * bins
    histogram = np.zeros(count * rows * cols * bins)
    for offset, share in ((0, 1.0 - share_high), (1, share_high)):
        index = cell_index + (low + offset) % bins
        histogram += np.bincount(index.ravel(), weights=(magnitude * share).ravel(), minlength=histogram.size)
    histogram = histogram.reshape(count, rows, cols, bins)
    block = max(1, min(block, rows, cols))
    windows = np.lib.stride_tricks.sliding_window_view(histogram, (block, block), axis=(1, 2))
    vectors = windows.reshape(count, -1, bins * block * block)  # one row per block
    vectors = vectors / np.sqrt((vectors**2).sum(axis=2, keepdims=True) + 1e-10)
    vectors = np.minimum(vectors, 0.2)
    vectors = vectors / np.sqrt((vectors**2).sum(axis=2, keepdims=True) + 1e-10)
    return vectors.reshape(count, -1)


def hog_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of the HOG descriptors of each pair of maps (Adebayo et al.'s HOG measure)."""
    a, b = _pairs(a, b)
    return pearson_rows(hog(a), hog(b))
