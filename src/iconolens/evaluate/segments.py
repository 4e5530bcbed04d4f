"""Boxes snapped to the painted object a map points at, by GrabCut segmentation seeded with the map.

A classifier's map lights up what sets a class apart (a saint's keys, a person's face), not the whole figure,
so a box drawn around the map's foreground is a box around a part. The pixels, unlike the map, know where the
figure ends: colour and edges separate it from its surroundings. GrabCut (Rother et al., 2004; OpenCV's
``cv2.grabCut``) fits colour models of object and background and cuts along the image's edges; seeded with the
map, it grows the discriminative part into the coherent region that holds it:

* pixels at or above the map's ``sure_percentile`` are certainly object (the evidence the classifier used);
* pixels at or above its ``likely_percentile`` are probably object, all others probably background (pixels at
  the map's minimum never count as object, so a map that is zero almost everywhere seeds only where it is lit);
* after ``iterations`` rounds, each connected object region covering at least ``min_area`` of the image gives
  one box, scored by the map's mean over the region.

The image is segmented at most ``max_side`` pixels on its longer side (GrabCut's cost grows with pixels, and
a box needs no finer outline); boxes come back in the image's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from iconolens.errors import BadInputError
from iconolens.evaluate.instances import MapBox


@dataclass(frozen=True)
class SegmentSeeds:
    """How the map seeds GrabCut, and how large a region must be to become a box."""

    sure_percentile: float = 95.0
    likely_percentile: float = 70.0
    iterations: int = 3
    min_area: float = 0.02
    max_side: int = 320

    def __post_init__(self) -> None:
        if not 0.0 <= self.likely_percentile <= self.sure_percentile <= 100.0:
            raise BadInputError("GrabCut seeds need 0 <= likely_percentile <= sure_percentile <= 100, got "
                                f"{self.likely_percentile} and {self.sure_percentile}")
        if self.iterations < 1 or not 0.0 <= self.min_area < 1.0 or self.max_side < 16:
            raise BadInputError("GrabCut needs at least one iteration, min_area in [0, 1) and max_side >= 16")

    def to_json(self) -> dict[str, float]:
        return dict(self.__dict__)


def segment_boxes(image: Image.Image, saliency: np.ndarray, seeds: SegmentSeeds = SegmentSeeds()) -> list[MapBox]:
    """Boxes of the object regions GrabCut finds in ``image`` from a normalised map of the image's size.

    ``saliency`` is ``(H, W)`` for an image of ``W x H`` pixels. A map with no contrast (constant) seeds nothing
    and gives no box. Boxes are best (highest mean map value) first.
    """
    width, height = image.size
    values = np.asarray(saliency, dtype=np.float32)
    if values.shape != (height, width):
        raise BadInputError(f"the map is {values.shape[1]} x {values.shape[0]} pixels but the image "
                            f"{width} x {height}")
    if not np.isfinite(values).all() or values.max() <= values.min():
        return []
    scale = min(1.0, seeds.max_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR))[:, :, ::-1])
    small = cv2.resize(values, size, interpolation=cv2.INTER_AREA)
    mask = np.full(small.shape, cv2.GC_PR_BGD, np.uint8)
    lit = small > small.min()  # a map's lowest value is never evidence, however many pixels share it
    mask[lit & (small >= np.percentile(small, seeds.likely_percentile))] = cv2.GC_PR_FGD
    mask[lit & (small >= np.percentile(small, seeds.sure_percentile))] = cv2.GC_FGD
    if (mask == cv2.GC_PR_BGD).all() or not (mask != cv2.GC_FGD).any():
        return []  # GrabCut needs both an object and a background to model
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(0)  # GrabCut starts its colour models with k-means from OpenCV's global generator
    cv2.grabCut(pixels, mask, None, background, foreground, seeds.iterations, cv2.GC_INIT_WITH_MASK)
    objects = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(objects, connectivity=8)
    means = np.bincount(labels.ravel(), weights=small.ravel(), minlength=count) / np.maximum(stats[:, 4], 1)
    boxes = []
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < seeds.min_area * objects.size:
            continue
        x0, y0 = int(np.floor(x / scale)), int(np.floor(y / scale))
        x1, y1 = min(width, int(np.ceil((x + w) / scale))), min(height, int(np.ceil((y + h) / scale)))
        boxes.append(MapBox(x0, y0, x1, y1, float(means[i])))
    return sorted(boxes, key=lambda b: -b.mean_activation)
