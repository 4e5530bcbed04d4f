"""Maps as the viewer stores and upsamples them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from iconolens.explain.normalise import normalise_maps
from iconolens.viewer.maps import maps_png, quantise_maps, viewer_saliency, working_size


@pytest.mark.parametrize(("small", "large"), [((4, 5), (64, 48)), ((7, 7), (224, 224)), ((3, 9), (31, 100))])
def test_the_viewers_upsampling_is_pytorchs_bilinear_with_half_pixel_centres(small, large) -> None:
    h, w = small
    width, height = large
    quantised = np.random.default_rng(1).integers(0, 256, (h, w)).astype(np.uint8)
    expected = normalise_maps(torch.tensor(quantised, dtype=torch.float64)[None, None], (height, width))[0, 0]
    got = viewer_saliency(quantised, (width, height))
    assert got.shape == (height, width)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)


def test_a_constant_map_is_zero_everywhere_and_never_nan() -> None:
    flat = np.full((3, 3), 17, dtype=np.uint8)
    assert not viewer_saliency(flat, (10, 10)).any()
    assert not quantise_maps(np.full((1, 4, 4), 2.5)).any()


def test_quantising_spans_0_to_255_per_map_and_treats_non_finite_values_as_the_minimum() -> None:
    raw = np.array([[[1.0, 2.0], [3.0, 5.0]], [[-4.0, np.nan], [0.0, -2.0]]])
    q = quantise_maps(raw)
    assert q[0].tolist() == [[0, 64], [128, 255]]  # (v - 1) / 4 * 255, rounded
    assert q[1].tolist() == [[0, 0], [255, 128]]


def test_maps_stored_larger_than_the_viewer_needs_are_shrunk_by_area() -> None:
    raw = np.zeros((1, 300, 600))
    raw[0, :, 300:] = 1.0  # right half hot
    q = quantise_maps(raw)
    assert q.shape == (1, 64, 128)
    assert (q[0, :, :64] == 0).all() and (q[0, :, 64:] == 255).all()


def test_the_png_holds_the_maps_stacked_top_to_bottom_exactly() -> None:
    maps = np.random.default_rng(2).integers(0, 256, (3, 4, 5)).astype(np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(maps_png(maps))))
    assert decoded.shape == (12, 5)
    np.testing.assert_array_equal(decoded.reshape(3, 4, 5), maps)


def test_the_working_grid_keeps_small_images_and_shrinks_large_ones_to_512() -> None:
    assert working_size(224, 160) == (224, 160)
    assert working_size(2000, 1000) == (512, 256)
    assert working_size(1000, 3000) == (171, 512)
