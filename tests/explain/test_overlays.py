"""heatmap_overlay: colour blend by hand, boxes in the right colours and places, shrinking large images."""

from __future__ import annotations

import matplotlib
import numpy as np
from PIL import Image

from iconolens.data.records import Box
from iconolens.report.overlays import heatmap_overlay


def test_blend_and_boxes():
    image = Image.new("RGB", (20, 10), (100, 50, 200))
    heat = np.zeros((10, 20))
    heat[:, 10:] = 1.0
    out = np.asarray(
        heatmap_overlay(
            image,
            heat,
            truth_boxes=[Box(2, 2, 8, 8, "Peter")],
            derived_boxes=[Box(12, 1, 19, 9, "Peter")],
            alpha=0.25,
            max_side=None,
        )
    ).astype(int)
    cold = np.array(matplotlib.colormaps["jet"](0.0)[:3]) * 255
    hot = np.array(matplotlib.colormaps["jet"](1.0)[:3]) * 255
    picture = np.array([100, 50, 200])
    np.testing.assert_array_equal(out[5, 0], np.rint(0.75 * picture + 0.25 * cold))
    np.testing.assert_array_equal(out[0, 19], np.rint(0.75 * picture + 0.25 * hot))
    assert tuple(out[5, 2]) == (255, 0, 0)  # left edge of the expert box
    assert tuple(out[5, 7]) == (255, 0, 0)  # right edge: half-open, last column is x1 - 1 = 7
    assert tuple(out[5, 5]) != (255, 0, 0)  # inside stays a heat map
    assert tuple(out[5, 12]) == (0, 255, 0)  # derived box in green


def test_large_image_is_shrunk_with_its_boxes():
    image = Image.new("RGB", (400, 200), (0, 0, 0))
    out = heatmap_overlay(image, np.zeros((7, 7)), truth_boxes=[Box(100, 50, 300, 150, "Paul")], max_side=100)
    assert out.size == (100, 50)
    pixels = np.asarray(out)
    assert tuple(pixels[30, 25]) == (255, 0, 0)  # x0 = 100 -> 25 after scaling by 1/4
