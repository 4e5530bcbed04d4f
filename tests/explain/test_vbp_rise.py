"""VisualBackProp and RISE against direct evaluations of their definitions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from iconolens.explain import explain_maps, normalise_maps
from iconolens.explain.rise import build_masks, plan_masks
from iconolens.explain.vbp import stages_by_resolution

from .conftest import CLASSES


def test_vbp_multiplies_channel_means_down_the_network(gap_net, images):
    result = explain_maps(gap_net, images, "vbp")
    shallow = gap_net.body[1](gap_net.body[0](images)).detach()  # 8x8 after the first ReLU: last output at full resolution
    deep = gap_net.body(images).detach()  # 4x4 target maps
    expected = shallow.clamp(min=0).mean(1, keepdim=True) * F.interpolate(
        deep.clamp(min=0).mean(1, keepdim=True), size=(8, 8), mode="bilinear", align_corners=False
    )
    assert result.raw.shape == (3, CLASSES, 8, 8)
    # The same map for every class.
    assert all(torch.equal(result.raw[:, c], result.raw[:, 0]) for c in range(CLASSES))
    # Equal up to a positive factor per image: compare after min-max normalisation.
    torch.testing.assert_close(
        normalise_maps(result.raw[:, :1], (8, 8)), normalise_maps(expected, (8, 8)), rtol=1e-6, atol=1e-6
    )


def test_stages_keep_the_last_output_of_each_resolution():
    a, b, c, d = (torch.zeros(1, 1, s, s) for s in (8, 8, 4, 1))
    stages = stages_by_resolution([a, b, c, d])
    assert len(stages) == 2 and stages[0] is b and stages[1] is c


def direct_bilinear_mask(grid: torch.Tensor, offset: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Half-pixel bilinear upsampling of a grid to (s+1) cells, written out, then the crop."""
    s = grid.shape[0]
    cell_h, cell_w = math.ceil(size[0] / s), math.ceil(size[1] / s)
    up_h, up_w = (s + 1) * cell_h, (s + 1) * cell_w

    def source(i: int, out: int) -> tuple[int, int, float]:
        x = min(max((i + 0.5) * s / out - 0.5, 0.0), s - 1)
        low = int(math.floor(x))
        high = min(low + 1, s - 1)
        return low, high, x - low

    up = torch.zeros(up_h, up_w)
    for i in range(up_h):
        y0, y1, fy = source(i, up_h)
        for j in range(up_w):
            x0, x1, fx = source(j, up_w)
            top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
            bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
            up[i, j] = top * (1 - fy) + bottom * fy
    r, c = offset
    return up[r : r + size[0], c : c + size[1]]


def test_masks_are_shifted_bilinear_grids():
    plan = plan_masks(6, grid=3, probability=0.5, size=(7, 5), seed=4)
    masks = build_masks(plan, 0, 6)
    assert masks.shape == (6, 1, 7, 5)
    for i in range(6):
        offset = tuple(int(v) for v in plan.offsets[i])
        assert 0 <= offset[0] < 3 and 0 <= offset[1] < 2  # less than one cell (ceil(7/3), ceil(5/3))
        expected = direct_bilinear_mask(plan.grids[i, 0], offset, (7, 5))
        torch.testing.assert_close(masks[i, 0], expected)


def test_mask_cells_are_kept_with_probability_p():
    plan = plan_masks(4000, grid=4, probability=0.3, size=(8, 8), seed=0)
    kept = float(plan.grids.mean())
    assert abs(kept - 0.3) < 0.01  # 64000 Bernoulli draws: standard error 0.0018


def test_rise_is_score_weighted_mask_average(gap_net, images):
    n_masks, grid, p, seed = 12, 2, 0.5, 9
    result = explain_maps(gap_net, images, "rise", n_masks=n_masks, grid=grid, p=p, seed=seed, map_stride=1)
    masks = build_masks(plan_masks(n_masks, grid, p, (8, 8), seed), 0, n_masks, torch.float64)
    expected = torch.zeros(3, CLASSES, 8, 8, dtype=torch.float64)
    for i in range(n_masks):
        with torch.no_grad():
            probabilities = torch.softmax(gap_net(images * masks[i]), dim=1)
        for n in range(3):
            for c in range(CLASSES):
                expected[n, c] += probabilities[n, c] * masks[i, 0]
    expected /= n_masks * p
    torch.testing.assert_close(result.raw, expected, rtol=1e-10, atol=1e-12)


def test_rise_reduced_resolution_is_area_average_and_batch_size_free(gap_net, images, monkeypatch):
    monkeypatch.setattr("iconolens.explain.engine.REFERENCE_PIXELS", 64)  # batch_size counts 8x8 images
    full = explain_maps(gap_net, images, "rise", n_masks=10, grid=2, seed=1, map_stride=1, batch_size=64)
    half = explain_maps(gap_net, images, "rise", n_masks=10, grid=2, seed=1, map_stride=2, batch_size=3)
    torch.testing.assert_close(half.raw, F.avg_pool2d(full.raw, 2), rtol=1e-10, atol=1e-12)


def test_rise_sigmoid_scores_for_multi_label_models(gap_net, images):
    result = explain_maps(gap_net, images, "rise", n_masks=2, activation="sigmoid")
    with torch.no_grad():
        torch.testing.assert_close(result.scores, torch.sigmoid(gap_net(images)).float())
