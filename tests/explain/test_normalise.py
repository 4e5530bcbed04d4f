"""normalise_maps: bilinear upsampling, then per-map min-max to [0, 1]; constant maps become zeros."""

from __future__ import annotations

import torch

from iconolens.explain import normalise_maps


def test_min_max_by_hand():
    raw = torch.tensor([[[[1.0, 3.0], [5.0, 9.0]], [[-2.0, -2.0], [0.0, 2.0]]]])
    expected = torch.tensor([[[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.5, 1.0]]]])
    torch.testing.assert_close(normalise_maps(raw, (2, 2)), expected)


def test_constant_map_becomes_zeros_not_nan():
    raw = torch.stack([torch.full((3, 3), 4.0), torch.zeros(3, 3)])[None]
    out = normalise_maps(raw, (6, 6))
    assert out.shape == (1, 2, 6, 6)
    assert torch.equal(out, torch.zeros_like(out))


def test_upsampling_is_bilinear_and_range_is_zero_to_one():
    raw = torch.tensor([[[[0.0, 1.0]]]])
    out = normalise_maps(raw, (1, 4))
    # Half-pixel bilinear from 2 to 4 columns: sources at -0.25, 0.25, 0.75, 1.25 -> 0, .25, .75, 1.
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 0.25, 0.75, 1.0]]]]))
    random = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    out = normalise_maps(random, (20, 28))
    assert out.dtype == torch.float32
    assert torch.allclose(out.amin(dim=(2, 3)), torch.zeros(2, 3))
    assert torch.allclose(out.amax(dim=(2, 3)), torch.ones(2, 3))
