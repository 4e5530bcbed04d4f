"""explain_maps as a whole: target layers of real architectures, side effects on the model, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from iconolens.errors import BadInputError
from iconolens.explain import METHODS, explain_maps, find_target_layer


@pytest.fixture(scope="module")
def resnet18():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    return resnet18(weights=None, num_classes=4)


def test_resnet_closed_form_equals_autograd(resnet18):
    """On a real ResNet the closed-form Grad-CAM equals one computed with autograd, class by class."""
    torch.manual_seed(1)
    image = torch.randn(1, 3, 64, 64)
    result = explain_maps(resnet18, image, "gradcam")
    assert result.target_layer == "layer4" and result.closed_form
    resnet18.eval()
    captured = {}
    handle = resnet18.layer4.register_forward_hook(lambda m, a, out: captured.update(a=out))
    logits = resnet18(image)
    handle.remove()
    for cls in range(4):
        (gradient,) = torch.autograd.grad(logits[0, cls], captured["a"], retain_graph=True)
        alpha = gradient[0].mean(dim=(1, 2))
        expected = torch.relu((alpha[:, None, None] * captured["a"][0]).sum(0)).detach()
        torch.testing.assert_close(result.raw[0, cls], expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


def test_target_layers_of_known_architectures():
    from efficientnet_lite_pytorch import EfficientNet
    from torchvision.models import mobilenet_v2

    lite = EfficientNet.from_name("efficientnet-lite0", num_classes=3)
    assert find_target_layer(lite).describe() == "_avg_pooling:input"
    assert find_target_layer(mobilenet_v2(weights=None, num_classes=3)).describe() == "features"
    image = torch.randn(2, 3, 64, 64)
    result = explain_maps(lite, image, "gradcampp")
    assert result.closed_form  # the lite head is GAP -> dropout -> linear
    assert result.raw.shape == (2, 3, 2, 2)


def test_named_target_layer_and_unknown_name(resnet18):
    image = torch.randn(1, 3, 64, 64)
    result = explain_maps(resnet18, image, "gradcam", target_layer="layer3")
    assert result.raw.shape == (1, 4, 4, 4)
    assert not result.closed_form  # layer3 is not what the head pools
    with pytest.raises(BadInputError, match=r"no layer named 'layer5'.*layer4"):
        explain_maps(resnet18, image, "gradcam", target_layer="layer5")


def test_model_modes_and_gradients_are_left_alone(mlp_net, images):
    mlp_net.train()
    mlp_net.body[0].eval()  # a mixed state, as when batch norm is frozen during fine-tuning
    mlp_net.fc[0].weight.grad = torch.ones_like(mlp_net.fc[0].weight)
    before = {name: module.training for name, module in mlp_net.named_modules()}
    for method in METHODS[1:]:
        explain_maps(mlp_net, images, method, n=2, n_masks=4)
    assert {name: module.training for name, module in mlp_net.named_modules()} == before
    assert torch.equal(mlp_net.fc[0].weight.grad, torch.ones_like(mlp_net.fc[0].weight))
    assert all(p.grad is None for name, p in mlp_net.named_parameters() if name != "fc.0.weight")
    assert all(p.requires_grad for p in mlp_net.parameters())


def test_model_in_train_mode_is_explained_in_eval_mode():
    """Dropout would make the maps random; in eval mode they repeat and agree with the model's output."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 3))
    net.train()
    image = torch.randn(2, 3, 10, 10)
    first = explain_maps(net, image, "gradcam")
    second = explain_maps(net, image, "gradcam")
    assert torch.equal(first.raw, second.raw)
    assert first.closed_form
    assert net.training


def test_input_in_gradient_mode_is_not_required(gap_net, images):
    images.requires_grad_(True)
    result = explain_maps(gap_net, images, "gradcam")
    assert not result.raw.requires_grad and images.grad is None


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(method="gradcam", classes=[7]), "no class 7"),
        (dict(method="gradcam", classes=["Paul"], class_names=["a", "b", "c", "d", "e"]), "no class 'Paul'"),
        (dict(method="smoothgradcampp", n=0), "at least 1"),
        (dict(method="smoothgradcampp", sigma=-0.1), "sigma must be 0 or more"),
        (dict(method="rise", n_masks=0), "at least 1"),
        (dict(method="rise", p=0.0), r"in \(0, 1\]"),
        (dict(method="saliency"), "unknown saliency method"),
    ],
)
def test_bad_parameters_get_one_sentence(gap_net, images, kwargs, message):
    with pytest.raises(BadInputError, match=message) as info:
        explain_maps(gap_net, images, **kwargs)
    assert "\n" not in str(info.value)


def test_input_that_is_not_three_channel_is_refused(gap_net):
    with pytest.raises(BadInputError, match="3-channel"):
        explain_maps(gap_net, torch.zeros(1, 1, 8, 8, dtype=torch.float64), "cam")
    with pytest.raises(BadInputError, match="3-channel"):
        explain_maps(gap_net, torch.zeros(3, 8, 8, dtype=torch.float64), "cam")


def test_model_without_recognisable_layer_asks_for_a_name(flatten_net, images):
    with pytest.raises(BadInputError, match="target_layer"):
        explain_maps(flatten_net, images, "gradcam")
