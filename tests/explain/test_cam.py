"""CAM, Grad-CAM, Grad-CAM++ and Smooth Grad-CAM++ against the formulas evaluated directly.

The direct evaluation takes one image and one class at a time, gets dS_c/dA with autograd through the
network's own head, and applies each formula with explicit loops over channels and positions.
"""

from __future__ import annotations

import pytest
import torch

from iconolens.errors import BadInputError
from iconolens.explain import explain_maps
from iconolens.explain.cam import gradcampp_from_gradients

from .conftest import CLASSES


def direct_gradient(net, image: torch.Tensor, cls: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, dS_cls/dA) for one image ``(3, H, W)``, A shaped ``(K, h, w)``."""
    features = net.body(image[None]).detach().requires_grad_(True)
    score = net.head(features)[0, cls]
    (gradient,) = torch.autograd.grad(score, features)
    return features.detach()[0], gradient[0]


def direct_gradcam(features: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    total = torch.zeros_like(features[0])
    for k in range(features.shape[0]):
        total += gradient[k].mean() * features[k]
    return total.clamp(min=0)


def direct_gradcampp(features: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    total = torch.zeros_like(features[0])
    height, width = features.shape[1:]
    for k in range(features.shape[0]):
        activation_sum = float(features[k].sum())
        weight = 0.0
        for y in range(height):
            for x in range(width):
                g = float(gradient[k, y, x])
                denominator = 2 * g**2 + activation_sum * g**3
                alpha = 0.0 if denominator == 0 else g**2 / denominator
                weight += alpha * max(g, 0.0)
        total += weight * features[k]
    return total.clamp(min=0)


def direct_maps(net, images, formula, classes=range(CLASSES)) -> torch.Tensor:
    out = []
    for image in images:
        per_class = []
        for cls in classes:
            features, gradient = direct_gradient(net, image, cls)
            per_class.append(formula(features, gradient))
        out.append(torch.stack(per_class))
    return torch.stack(out)


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    scale = max(float(expected.abs().max()), 1e-12)
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-10 * scale)


def test_cam_is_weighted_sum_of_feature_maps(gap_net, images):
    result = explain_maps(gap_net, images, "cam")
    features = gap_net.body(images).detach()
    expected = torch.zeros((len(images), CLASSES, *features.shape[-2:]), dtype=torch.float64)
    for n in range(len(images)):
        for c in range(CLASSES):
            for k in range(features.shape[1]):
                expected[n, c] += gap_net.fc.weight[c, k].item() * features[n, k]
    assert result.closed_form
    assert result.target_layer == "pool:input"
    assert_close(result.raw, expected)
    # CAM is not rectified: a random head gives negative evidence somewhere.
    assert float(result.raw.min()) < 0


@pytest.mark.parametrize("method,formula", [("gradcam", direct_gradcam), ("gradcampp", direct_gradcampp)])
def test_closed_form_matches_autograd_for_gap_linear_head(gap_net, images, method, formula):
    result = explain_maps(gap_net, images, method)
    assert result.closed_form
    assert_close(result.raw, direct_maps(gap_net, images, formula))


@pytest.mark.parametrize("method,formula", [("gradcam", direct_gradcam), ("gradcampp", direct_gradcampp)])
def test_batched_backward_matches_autograd_for_mlp_head(mlp_net, images, method, formula):
    result = explain_maps(mlp_net, images, method)
    assert not result.closed_form
    expected = direct_maps(mlp_net, images, formula)
    assert float(expected.max()) > 0
    assert_close(result.raw, expected)


@pytest.mark.parametrize("method,formula", [("gradcam", direct_gradcam), ("gradcampp", direct_gradcampp)])
def test_batched_backward_matches_autograd_for_flatten_head(flatten_net, images, method, formula):
    result = explain_maps(flatten_net, images, method, target_layer="body")
    assert not result.closed_form
    assert_close(result.raw, direct_maps(flatten_net, images, formula))


def test_cam_refuses_a_head_that_is_not_gap_linear(mlp_net, images):
    with pytest.raises(BadInputError, match="global average pooling"):
        explain_maps(mlp_net, images, "cam")


def test_chosen_classes_give_those_maps_in_that_order(mlp_net, images):
    chosen = [3, 0]
    result = explain_maps(mlp_net, images, "gradcampp", classes=chosen)
    assert result.class_indices == (3, 0)
    assert_close(result.raw, direct_maps(mlp_net, images, direct_gradcampp, classes=chosen))
    logits = mlp_net(images).detach()
    # Scores are float32 probabilities of the chosen classes, taken over all classes.
    assert result.scores.dtype == torch.float32
    torch.testing.assert_close(result.scores, torch.softmax(logits, dim=1)[:, chosen].float())


def test_class_names_select_classes(gap_net, images):
    names = ["Peter", "Paul", "Mary", "John", "Jerome"]
    by_name = explain_maps(gap_net, images, "gradcam", classes=["John"], class_names=names)
    by_index = explain_maps(gap_net, images, "gradcam", classes=[3])
    assert by_name.class_indices == (3,)
    assert torch.equal(by_name.raw, by_index.raw)


def test_gradcampp_alpha_is_zero_where_denominator_vanishes():
    # One channel, two positions, A = (1, 1) so sum_ab A = 2. At the first position g = -1:
    # 2 g^2 + 2 g^3 = 2 - 2 = 0, so alpha = 0 there (and ReLU(g) = 0 anyway). At the second, g = 0.5:
    # alpha = 0.25 / (0.5 + 0.25) = 1/3, weight = 1/3 * 0.5 = 1/6, map = ReLU(1/6 * A) = (1/6, 1/6).
    features = torch.tensor([[[[1.0, 1.0]]]], dtype=torch.float64)  # (N=1, K=1, 1, 2)
    gradients = torch.tensor([[[[[-1.0, 0.5]]]]], dtype=torch.float64)  # (N=1, C=1, K=1, 1, 2)
    result = gradcampp_from_gradients(features, gradients)
    assert torch.isfinite(result).all()
    torch.testing.assert_close(result, torch.full((1, 1, 1, 2), 1 / 6, dtype=torch.float64))
    # Second channel whose g is zero everywhere contributes nothing (0/0 -> 0, not NaN).
    features2 = torch.cat([features, torch.full_like(features, 5.0)], dim=1)
    gradients2 = torch.cat([gradients, torch.zeros_like(gradients)], dim=2)
    torch.testing.assert_close(gradcampp_from_gradients(features2, gradients2), result)


def test_gradcampp_with_zero_weight_column_has_no_nan(gap_net, images):
    with torch.no_grad():
        gap_net.fc.weight[2].zero_()
    result = explain_maps(gap_net, images, "gradcampp")
    assert torch.isfinite(result.raw).all()
    assert torch.equal(result.raw[:, 2], torch.zeros_like(result.raw[:, 2]))
    assert_close(result.raw, direct_maps(gap_net, images, direct_gradcampp))


def _documented_noise(images: torch.Tensor, n: int, sigma: float, seed: int) -> torch.Tensor:
    """The noisy copies as the docstring of explain_maps defines them, shaped (n, N, 3, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, 1, *images.shape[1:]), generator=generator, dtype=torch.float32).double()
    copies = []
    for i in range(n):
        per_image = []
        for image in images:
            spread = float(image.max() - image.min())
            per_image.append(image + noise[i, 0] * sigma * spread)
        copies.append(torch.stack(per_image))
    return torch.stack(copies)


@pytest.mark.parametrize("net_name", ["gap_net", "mlp_net"])
def test_smooth_gradcampp_is_mean_of_gradcampp_over_noisy_copies(request, images, net_name, monkeypatch):
    # batch_size counts 8x8 images here, so the 3 clean + 9 noisy images take three forward passes.
    monkeypatch.setattr("iconolens.explain.engine.REFERENCE_PIXELS", 64)
    net = request.getfixturevalue(net_name)
    n, sigma, seed = 3, 0.2, 11
    result = explain_maps(net, images, "smoothgradcampp", n=n, sigma=sigma, seed=seed, batch_size=4)
    copies = _documented_noise(images, n, sigma, seed)
    expected = torch.stack([direct_maps(net, copy, direct_gradcampp) for copy in copies]).mean(dim=0)
    assert_close(result.raw, expected)
    # Scores are those of the clean images, not of the noisy copies.
    torch.testing.assert_close(result.scores, torch.softmax(net(images).detach(), dim=1).float())


def test_smooth_gradcampp_with_zero_noise_is_gradcampp(mlp_net, images):
    smooth = explain_maps(mlp_net, images, "smoothgradcampp", n=2, sigma=0.0)
    plain = explain_maps(mlp_net, images, "gradcampp")
    assert_close(smooth.raw, plain.raw)


def test_smooth_gradcampp_is_reproducible_and_seed_dependent(gap_net, images):
    first = explain_maps(gap_net, images, "smoothgradcampp", n=2, seed=5)
    again = explain_maps(gap_net, images, "smoothgradcampp", n=2, seed=5)
    other = explain_maps(gap_net, images, "smoothgradcampp", n=2, seed=6)
    assert torch.equal(first.raw, again.raw)
    assert not torch.equal(first.raw, other.raw)


def test_maps_of_an_image_do_not_depend_on_its_batch(mlp_net, images):
    whole = explain_maps(mlp_net, images, "smoothgradcampp", n=2, seed=3)
    alone = explain_maps(mlp_net, images[1:2], "smoothgradcampp", n=2, seed=3)
    assert_close(alone.raw[0], whole.raw[1])


def test_known_scores_skip_the_clean_pass_and_keep_the_maps(mlp_net, images):
    full = explain_maps(mlp_net, images, "smoothgradcampp", n=2, seed=4)
    given = torch.full_like(full.scores, 0.5)
    reused = explain_maps(mlp_net, images, "smoothgradcampp", n=2, seed=4, known_scores=given)
    assert torch.equal(reused.raw, full.raw)
    assert torch.equal(reused.scores, given)
    with pytest.raises(BadInputError, match="known_scores"):
        explain_maps(mlp_net, images, "smoothgradcampp", n=2, known_scores=given[:, :2])
