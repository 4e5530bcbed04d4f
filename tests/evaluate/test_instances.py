"""One box per salient instance: maps built by hand, boxes reasoned out from their formulas."""

from __future__ import annotations

import numpy as np
import pytest

from iconolens.errors import BadInputError
from iconolens.evaluate.instances import MapBox, instance_boxes


def _blob(shape: tuple[int, int], x: float, y: float, height: float, sigma: float) -> np.ndarray:
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    return height * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma ** 2))


def _contains(box: MapBox, x: float, y: float) -> bool:
    return box.x0 <= x < box.x1 and box.y0 <= y < box.y1


def test_two_separated_blobs_give_one_box_each():
    # sigma 5: a blob is >= 0.2 of its peak where r^2 <= 2 * 25 * ln 5 = 80.47, i.e. |dx| <= 8 on its axis;
    # the blobs are 40 px apart, so each adds about exp(-32) to the other.
    saliency = _blob((60, 80), 20, 30, 1.0, 5) + _blob((60, 80), 60, 30, 0.8, 5)
    first, second = instance_boxes(saliency)
    assert first.xyxy == (12, 22, 29, 39)
    assert second.xyxy == (52, 22, 69, 39)  # 0.2 of its own peak (0.16): the same radius as the first
    assert _contains(first, 20, 30) and not _contains(first, 60, 30)
    assert _contains(second, 60, 30) and not _contains(second, 20, 30)
    assert first.peak_height == pytest.approx(1.0) and second.peak_height == pytest.approx(0.8)
    # Best first: the same shape at 0.8 of the height has 0.8 of the mean activation.
    assert second.mean_activation == pytest.approx(0.8 * first.mean_activation)
    (only,) = instance_boxes(saliency, max_instances=1)
    assert only == first


def test_a_flat_plateau_is_one_peak():
    saliency = np.zeros((30, 30))
    saliency[10:20, 5:25] = 0.7  # 200 equal maxima: one peak, not 200 boxes, even with no merging by distance
    (box,) = instance_boxes(saliency, min_distance=0.0)
    assert box.xyxy == (5, 10, 25, 20)
    assert box.mean_activation == pytest.approx(0.7) and box.peak_height == pytest.approx(0.7)


def test_a_shelf_beside_a_higher_peak_is_not_a_peak():
    saliency = np.zeros((24, 24))
    saliency[5:19, 5:19] = 0.6  # a flat shelf whose inner edge climbs on to the peak
    saliency[10:14, 10:14] = 1.0
    (box,) = instance_boxes(saliency, min_distance=0.0)
    assert box.xyxy == (5, 5, 19, 19)  # the shelf (>= 0.2) belongs to the peak's region
    assert box.peak_height == 1.0
    assert box.mean_activation == pytest.approx((16 * 1.0 + (196 - 16) * 0.6) / 196)


def test_peaks_closer_than_min_distance_merge_into_one_box():
    # Two maxima 8 px apart (sigma 2): the valley between them is 1.9 * exp(-2) = 0.257, above 0.2, so the
    # merged instance's region joins both. Its edges, at 0.2 of the higher peak, by hand:
    # left x = 37 (exp(-9/8) = 0.32 > 0.2 > exp(-2)), right x = 51 (0.9 * exp(-9/8) = 0.29), rows 47..53
    # (at the valley column 1.9 * exp(-17/8) = 0.23 one row off, 1.9 * exp(-20/8) = 0.16 two rows off;
    # on the peak columns exp(-9/8) three rows off).
    saliency = _blob((100, 100), 40, 50, 1.0, 2) + _blob((100, 100), 48, 50, 0.9, 2)
    (merged,) = instance_boxes(saliency, min_distance=0.1)  # 10 px on a 100 px map
    assert merged.xyxy == (37, 47, 52, 54)
    assert merged.peak_height == pytest.approx(1.0 + 0.9 * np.exp(-8))  # the higher peak plus the other's tail
    apart = instance_boxes(saliency, min_distance=0.05)  # 5 px: two instances
    assert len(apart) == 2
    (left,) = [b for b in apart if _contains(b, 40, 50)]
    (right,) = [b for b in apart if _contains(b, 48, 50)]
    assert left is not right and not _contains(left, 48, 50) and not _contains(right, 40, 50)


def test_min_distance_does_not_depend_on_resolution():
    small = _blob((100, 100), 40, 50, 1.0, 2) + _blob((100, 100), 48, 50, 0.9, 2)
    large = _blob((200, 200), 80, 100, 1.0, 4) + _blob((200, 200), 96, 100, 0.9, 4)
    assert len(instance_boxes(small)) == len(instance_boxes(large)) == 1
    assert len(instance_boxes(small, min_distance=0.05)) == len(instance_boxes(large, min_distance=0.05)) == 2


def test_a_weak_secondary_peak_is_dropped():
    saliency = _blob((60, 80), 20, 30, 1.0, 5) + _blob((60, 80), 60, 30, 0.25, 5)
    (box,) = instance_boxes(saliency, relative_height=0.3)  # 0.25 < 0.3 of the maximum
    assert _contains(box, 20, 30) and not _contains(box, 60, 30)
    assert box.xyxy == (12, 22, 29, 39)  # the weak blob's pixels, cut off by the valley, are not added
    assert len(instance_boxes(saliency, relative_height=0.2)) == 2


def test_constant_maps_as_documented():
    assert instance_boxes(np.zeros((8, 10))) == []  # what normalisation makes of any constant map
    (box,) = instance_boxes(np.full((8, 10), 0.4))
    assert box.xyxy == (0, 0, 10, 8) and box.mean_activation == pytest.approx(0.4)


def test_region_fraction_sets_how_far_an_instance_grows():
    saliency = _blob((60, 80), 20, 30, 1.0, 5)
    (wide,) = instance_boxes(saliency, region_fraction=0.2)
    (narrow,) = instance_boxes(saliency, region_fraction=0.5)
    assert narrow.xyxy == (15, 25, 26, 36)  # r^2 <= 50 ln 2 = 34.7: |dx| <= 5
    assert wide.x1 - wide.x0 > narrow.x1 - narrow.x0


@pytest.mark.parametrize(
    "saliency, options",
    [
        (np.zeros((2, 3, 4)), {}),
        (np.array([[0.0, np.nan], [0.5, 1.0]]), {}),
        (np.zeros((4, 4)), {"min_distance": 2.0}),
        (np.zeros((4, 4)), {"max_instances": 0}),
    ],
)
def test_bad_input_is_refused(saliency, options):
    with pytest.raises(BadInputError):
        instance_boxes(saliency, **options)
