"""Boxes snapped to segments: a map that lights up part of a painted figure gives a box around the whole figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from iconolens.errors import BadInputError
from iconolens.evaluate.boxes import BoxRecipe, boxes_from_map
from iconolens.evaluate.segments import SegmentSeeds, segment_boxes

FIGURE = (30, 10, 70, 110)  # x0, y0, x1, y1 of a red figure on a 120 x 100 grey ground


def _painting() -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = (110 + rng.normal(0, 8, (120, 100, 3))).clip(0, 255)
    x0, y0, x1, y1 = FIGURE
    pixels[y0:y1, x0:x1] = (200, 40, 40) + rng.normal(0, 8, (y1 - y0, x1 - x0, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _part_map() -> np.ndarray:
    """A bump on the figure's head only (the discriminative part), nothing elsewhere."""
    yy, xx = np.mgrid[0:120, 0:100]
    return np.exp(-(((xx - 50) / 8.0) ** 2 + ((yy - 22) / 8.0) ** 2)).astype(np.float32)


def _iou(box, other) -> float:
    return float(box_iou(torch.tensor([box], dtype=torch.float32), torch.tensor([other], dtype=torch.float32))[0, 0])


def test_a_map_on_the_head_gives_a_box_around_the_whole_figure() -> None:
    saliency = _part_map()
    thresholded = boxes_from_map(saliency, "figure", float(np.percentile(saliency, 70)))[0]
    snapped = segment_boxes(_painting(), saliency)
    assert len(snapped) == 1
    assert _iou(snapped[0].xyxy, FIGURE) > 0.85
    assert _iou(thresholded.xyxy, FIGURE) < 0.6  # the map alone stops at the part it lit up
    assert snapped[0].mean_activation > 0


def test_segmentation_at_a_smaller_size_returns_boxes_in_the_images_pixels() -> None:
    big = _painting().resize((200, 240), Image.Resampling.NEAREST)
    saliency = np.kron(_part_map(), np.ones((2, 2), dtype=np.float32))
    snapped = segment_boxes(big, saliency, SegmentSeeds(max_side=120))
    doubled = tuple(2 * v for v in FIGURE)
    assert len(snapped) == 1 and _iou(snapped[0].xyxy, doubled) > 0.85
    assert 0 <= snapped[0].x0 < snapped[0].x1 <= 200 and 0 <= snapped[0].y0 < snapped[0].y1 <= 240


def test_a_map_without_contrast_seeds_nothing_and_sizes_must_agree() -> None:
    assert segment_boxes(_painting(), np.zeros((120, 100), np.float32)) == []
    with pytest.raises(BadInputError, match="the map is 50 x 60 pixels but the image 100 x 120"):
        segment_boxes(_painting(), np.zeros((60, 50), np.float32))
    with pytest.raises(BadInputError, match="likely_percentile <= sure_percentile"):
        SegmentSeeds(sure_percentile=50, likely_percentile=80)
    with pytest.raises(BadInputError, match="do not apply"):
        BoxRecipe(gate=False, percentile=70.0, segments=SegmentSeeds())
    with pytest.raises(BadInputError, match="need the image"):
        BoxRecipe(gate=False, segments=SegmentSeeds()).boxes(_part_map())


def test_the_same_map_and_image_give_the_same_boxes_every_time() -> None:
    rng = np.random.default_rng(3)
    painting = Image.fromarray(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8))
    saliency = rng.random((80, 90)).astype(np.float32)
    first = segment_boxes(painting, saliency)
    segment_boxes(Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)), rng.random((50, 50)))
    assert segment_boxes(painting, saliency) == first
