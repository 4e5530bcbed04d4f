"""ViT-B/16, Swin-T and ConvNeXt-T in the registry: a new head, ImageNet files loaded beside it, fixed sizes.

The registry's builders call torchvision's constructors; most tests swap those for tiny versions of the
same architectures, so every invariant is checked on the registry's own code in a fraction of a second.
"""

from __future__ import annotations

import pytest
import torch
import torchvision.models
from torch import nn
from torchvision.models import SwinTransformer, VisionTransformer
from torchvision.models.convnext import CNBlockConfig, ConvNeXt

from iconolens.errors import BadInputError
from iconolens.explain import find_target_layer
from iconolens.models.backbones import (
    BACKBONES,
    build_classifier,
    classifier_head,
    frozen_prefix_modules,
)
from iconolens.models.training import TrainingConfig, _starting_model, train_classifier

NAMES = ("vit_b_16", "swin_t", "convnext_tiny")
HEADS = {"vit_b_16": "heads.head.", "swin_t": "head.", "convnext_tiny": "classifier.2."}


def _tiny_vit(weights=None) -> nn.Module:
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32)


def _tiny_swin(weights=None) -> nn.Module:
    return SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=[2, 2])


def _tiny_convnext(weights=None) -> nn.Module:
    return ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)])


@pytest.fixture
def tiny(monkeypatch):
    """torchvision's constructors replaced by tiny versions of the same architectures (1000 classes)."""
    monkeypatch.setattr(torchvision.models, "vit_b_16", _tiny_vit)
    monkeypatch.setattr(torchvision.models, "swin_t", _tiny_swin)
    monkeypatch.setattr(torchvision.models, "convnext_tiny", _tiny_convnext)


@pytest.mark.parametrize("name", NAMES)
def test_new_head_is_the_last_module_and_the_only_keys_under_head_prefixes(tiny, name):
    torch.manual_seed(0)
    model = build_classifier(name, 3, pretrained=False).eval()
    head = classifier_head(model)
    assert list(model.modules())[-1] is head and head.out_features == 3
    under_prefix = {k for k in model.state_dict() if k.startswith(BACKBONES[name].head_prefixes)}
    assert under_prefix == {HEADS[name] + "weight", HEADS[name] + "bias"}
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("name", NAMES)
def test_an_imagenet_file_of_the_same_architecture_loads_into_all_but_the_head(tiny, name, tmp_path):
    torch.manual_seed(1)
    source = build_classifier(name, 1000, pretrained=False)
    path = tmp_path / f"{name}.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    model = build_classifier(name, 3, weights=path)
    own, original = model.state_dict(), source.state_dict()
    body = [k for k in own if not k.startswith(HEADS[name])]
    assert body and all(torch.equal(own[k], original[k]) for k in body)
    assert own[HEADS[name] + "weight"].shape[0] == 3
    if name == "convnext_tiny":  # the LayerNorm2d before the new Linear is ImageNet's
        assert "classifier.0.weight" in body


def test_vit_files_with_the_legacy_mlp_names_load(tiny, tmp_path):
    torch.manual_seed(1)
    source = build_classifier("vit_b_16", 1000, pretrained=False).state_dict()
    legacy = {k.replace(".mlp.0.", ".mlp.linear_1.").replace(".mlp.3.", ".mlp.linear_2."): v for k, v in source.items()}
    assert any(".mlp.linear_1." in k for k in legacy)
    path = tmp_path / "vit_b_16-legacy.pth"
    torch.save(legacy, path)
    model = build_classifier("vit_b_16", 3, weights=path)
    layer = model.encoder.layers[1].mlp[3]
    assert torch.equal(layer.weight, source["encoder.layers.encoder_layer_1.mlp.3.weight"])


def test_training_starts_from_the_named_weights_file(tiny, tmp_path):
    torch.manual_seed(1)
    source = build_classifier("vit_b_16", 1000, pretrained=False)
    path = tmp_path / "vit.pth"
    torch.save(source.state_dict(), path)
    model = _starting_model(TrainingConfig(backbone="vit_b_16", weights=str(path)), 4)
    assert torch.equal(model.conv_proj.weight, source.conv_proj.weight)
    assert classifier_head(model).out_features == 4


def test_vit_freezing_never_reaches_the_head(tiny):
    model = build_classifier("vit_b_16", 3, pretrained=False)
    frozen = frozen_prefix_modules(model, 1.0)
    assert frozen == [model.conv_proj, *model.encoder.layers]


def test_vit_is_trained_at_224_pixels_only(squares, tmp_path):
    with pytest.raises(BadInputError, match="vit_b_16 takes images of exactly 224 pixels.*not 128"):
        train_classifier(squares, TrainingConfig(backbone="vit_b_16", image_size=128), tmp_path / "run")


def test_the_full_size_architectures_keep_their_layout():
    """The real networks (built once each, not run): head width, target layer, input sizes."""
    torch.manual_seed(0)
    vit = build_classifier("vit_b_16", 3, pretrained=False)
    assert classifier_head(vit).in_features == 768 and find_target_layer(vit).name == "encoder.layers.encoder_layer_11.ln_1"
    assert BACKBONES["vit_b_16"].fixed_input_size == 224 == vit.image_size
    swin = build_classifier("swin_t", 3, pretrained=False)
    assert classifier_head(swin).in_features == 768 and find_target_layer(swin).name == "norm"
    convnext = build_classifier("convnext_tiny", 3, pretrained=False)
    assert classifier_head(convnext).in_features == 768 and find_target_layer(convnext).name == "features"
    assert BACKBONES["swin_t"].fixed_input_size is None and BACKBONES["convnext_tiny"].fixed_input_size is None


@pytest.mark.slow
def test_full_size_vit_gives_14_by_14_gradcam_maps():
    from iconolens.explain import explain_maps

    torch.manual_seed(0)
    vit = build_classifier("vit_b_16", 2, pretrained=False)
    result = explain_maps(vit, torch.randn(1, 3, 224, 224), "gradcam")
    assert result.raw.shape == (1, 2, 14, 14) and result.raw.amax() > 0
