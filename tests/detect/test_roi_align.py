"""MatrixRoIAlign against torchvision's own MultiScaleRoIAlign: same pooled values, same gradients."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from iconolens.detect.roi_align import MatrixRoIAlign

HEIGHT, WIDTH = 160, 224


def _boxes(generator: torch.Generator, count: int) -> torch.Tensor:
    """Boxes of every size, some thinner than a feature cell, some reaching or crossing the image border."""
    corner = torch.rand(count, 2, generator=generator) * torch.tensor([WIDTH, HEIGHT]) - 8
    size = torch.rand(count, 2, generator=generator) ** 2 * torch.tensor([WIDTH, HEIGHT]) + 0.3
    return torch.cat([corner, corner + size], 1)


def _pool_both(names: list[str], shapes: list[tuple[int, int]], counts: list[int]):
    generator = torch.Generator().manual_seed(len(names))
    features = {
        name: torch.randn(len(counts), 8, *shape, generator=generator, dtype=torch.float64, requires_grad=True)
        for name, shape in zip(names, shapes)
    }
    boxes = [_boxes(generator, n).double() for n in counts]
    image_shapes = [(HEIGHT, WIDTH)] * len(counts)
    upstream = torch.randn(sum(counts), 8, 7, 7, generator=generator, dtype=torch.float64)
    results = []
    for pool in (MultiScaleRoIAlign(names, 7, 2), MatrixRoIAlign(names, 7, 2)):
        for tensor in features.values():
            tensor.grad = None
        pooled = pool(features, boxes, image_shapes)
        (pooled * upstream).sum().backward()
        grads = [t.grad.clone() if t.grad is not None else torch.zeros_like(t) for t in features.values()]
        results.append((pooled.detach(), grads))
    return results


def test_one_feature_map_matches_torchvision() -> None:
    (expected, expected_grads), (actual, actual_grads) = _pool_both(["0"], [(10, 14)], [40, 0, 25])
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(actual_grads[0], expected_grads[0], rtol=1e-10, atol=1e-10)


def test_pyramid_levels_match_torchvision() -> None:
    """Boxes go to the level torchvision would choose (values equal only if every box picks the same level)."""
    names, shapes = ["0", "1", "2"], [(80, 112), (40, 56), (20, 28)]  # strides 2, 4, 8: sides <56, <112, more
    (expected, expected_grads), (actual, actual_grads) = _pool_both(names, shapes, [60, 30])
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)
    for got, want in zip(actual_grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert all(g.abs().sum() > 0 for g in expected_grads)  # the boxes really spread over the three levels


def test_adaptive_sampling_is_refused() -> None:
    with pytest.raises(ValueError, match="fixed sampling ratio"):
        MatrixRoIAlign(["0"], 7, 0)
