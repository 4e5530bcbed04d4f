"""The registry builds GAP + linear classifiers, loads shipped weights, and initialises by He's rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from iconolens.errors import BadCheckpointError, BadInputError
from iconolens.models.backbones import (
    BACKBONES,
    build_classifier,
    classifier_head,
    he_uniform_init,
    load_backbone_weights,
    replace_head,
)
from iconolens.models.features import pooled_features


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2", "resnet18", "alexnet", "inception_v3"])
def test_every_backbone_ends_in_a_linear_head_with_one_logit_per_class(name):
    torch.manual_seed(0)
    model = build_classifier(name, 4, pretrained=False).eval()
    last = list(model.modules())[-1]
    assert isinstance(last, nn.Linear) and last.out_features == 4
    assert classifier_head(model) is last
    size = max(BACKBONES[name].min_input_size, 64)
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 4)


def test_mobilenet_logits_are_linear_in_the_average_of_the_last_feature_maps():
    """The form CAM relies on: logits = W . mean_{x,y} A(x, y) + b."""
    torch.manual_seed(0)
    model = build_classifier("mobilenet_v2", 3, pretrained=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = model.features(x)
        head = classifier_head(model)
        expected = maps.mean(dim=(2, 3)) @ head.weight.T + head.bias
        assert torch.allclose(model(x), expected, atol=1e-5)


def test_shipped_imagenet_weights_are_loaded_into_the_body_not_the_head():
    spec = BACKBONES["efficientnet_lite0"]
    shipped = torch.load(spec.default_weights(), weights_only=True)
    model = build_classifier("efficientnet_lite0", 5)
    state = model.state_dict()
    assert torch.equal(state["_conv_stem.weight"], shipped["_conv_stem.weight"])
    assert torch.equal(state["_blocks.3._depthwise_conv.weight"], shipped["_blocks.3._depthwise_conv.weight"])
    assert state["_fc.weight"].shape == (5, 1280)  # ImageNet's 1000-way head is not used
    mobilenet = build_classifier("mobilenet_v2", 5).state_dict()
    mobile_file = torch.load(BACKBONES["mobilenet_v2"].default_weights(), weights_only=True)
    assert torch.equal(mobilenet["features.0.0.weight"], mobile_file["features.0.0.weight"])


def test_weights_of_another_backbone_are_refused_in_one_sentence(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(build_classifier("resnet18", 1000, pretrained=False).state_dict(), path)
    model = build_classifier("alexnet", 3, pretrained=False)
    with pytest.raises(BadCheckpointError, match="do not fit the alexnet architecture") as info:
        load_backbone_weights(model, BACKBONES["alexnet"], path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_user_weights_file_for_the_same_architecture_is_used(tmp_path):
    torch.manual_seed(1)
    source = build_classifier("resnet18", 1000, pretrained=False)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(source.state_dict(), path)
    model = build_classifier("resnet18", 3, weights=path)
    assert torch.equal(model.layer3[0].conv1.weight, source.layer3[0].conv1.weight)


def test_unknown_backbone_names_the_choices():
    with pytest.raises(BadInputError, match="mobilenet_v2"):
        build_classifier("lenet", 2)


def test_he_uniform_statistics():
    torch.manual_seed(0)
    layer = nn.Conv2d(64, 256, 3)
    he_uniform_init(layer)
    fan_in = 64 * 9
    bound = math.sqrt(6 / fan_in)
    w = layer.weight.detach()
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.99 * bound  # the whole interval is used
    # U(-b, b) has variance b^2 / 3 = 2 / fan_in (He's condition for ReLU)
    assert w.var().item() == pytest.approx(2 / fan_in, rel=0.03)
    assert w.mean().item() == pytest.approx(0.0, abs=0.01 * bound)
    assert torch.count_nonzero(layer.bias) == 0


def test_scratch_model_has_he_initialised_layers_and_neutral_batch_norm():
    torch.manual_seed(0)
    model = build_classifier("resnet18", 3, he_init=True)
    conv = model.layer4[1].conv2  # 512 x 512 x 3 x 3
    assert conv.weight.var().item() == pytest.approx(2 / (512 * 9), rel=0.03)
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)


def test_replaced_head_keeps_the_body_and_gets_new_outputs():
    torch.manual_seed(0)
    model = build_classifier("resnet18", 3, pretrained=False)
    body = model.layer1[0].conv1.weight.clone()
    replace_head(model, "resnet18", 7)
    assert classifier_head(model).out_features == 7 and model.fc.out_features == 7
    assert torch.equal(model.layer1[0].conv1.weight, body)


def test_pooled_features_are_the_head_input():
    torch.manual_seed(0)
    model = build_classifier("resnet18", 3, pretrained=False).eval()
    images = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8)
    features = pooled_features(model, images, (0.5,) * 3, (0.5,) * 3, batch_size=2)
    x = (images.float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        assert torch.allclose(model.fc(features), model(x), atol=1e-5)
    assert features.shape == (3, 512)


def test_a_missing_or_foreign_weights_file_is_refused(tmp_path):
    with pytest.raises(BadCheckpointError, match="weights file does not exist"):
        build_classifier("resnet18", 3, weights=tmp_path / "absent.pth")
    text = tmp_path / "weights.pth"
    text.write_text("these are not weights")
    with pytest.raises(BadCheckpointError, match="not a PyTorch state-dict file") as info:
        build_classifier("resnet18", 3, weights=text)
    assert str(text) in str(info.value)
