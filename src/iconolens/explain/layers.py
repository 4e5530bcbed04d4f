"""Which feature maps a saliency method looks at: the target layer, found automatically or named.

CAM-style methods read the last convolutional feature maps, the ones a classifier pools into its head. For
the architectures people fine-tune on artworks the layer is known by structure; anything else is found as
the input of the last average-pooling module, or named by the user (``target_layer="layer4"``). A name may
end in ``:input`` to mean the tensor entering that module rather than the one leaving it, which is how
EfficientNet-Lite's final activation (computed by a shared module) is reached: ``"_avg_pooling:input"``.

Transformers have no last convolution. For a ViT the logits read only the class token, so the last
block's output carries no gradient to the patch tokens; the target is the output of the last block's
first LayerNorm (``encoder.layers.encoder_layer_11.ln_1`` in ViT-B/16), the patch tokens the final
attention mixes into the class token (as pytorch-grad-cam advises). For Swin it is ``norm``, the
channels-last maps its head averages, the counterpart of a CNN's last activation.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from torch import nn

from iconolens.errors import BadInputError

Side = Literal["output", "input"]


@dataclass(frozen=True)
class TargetLayer:
    """A module of the model and which side of it (its output, or its input) carries the feature maps."""

    name: str
    side: Side = "output"

    def describe(self) -> str:
        """The spelling a user can pass back as ``target_layer``."""
        return self.name if self.side == "output" else f"{self.name}:input"


def module_named(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (dotted path), or a sentence listing nearby valid names."""
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=6, cutoff=0.5)
    if not close:
        close = [n for n, _ in model.named_children()][-6:]
    raise BadInputError(
        f"the model has no layer named {name!r}; nearby valid names are " + ", ".join(close)
    )


def named_target_layer(model: nn.Module, name: str) -> TargetLayer:
    """Parse ``"name"`` or ``"name:input"`` and check that the module exists."""
    side: Side = "output"
    if name.endswith(":input"):
        name, side = name[: -len(":input")], "input"
    module_named(model, name)
    return TargetLayer(name, side)


def find_target_layer(model: nn.Module) -> TargetLayer:
    """The last feature maps of a known architecture (see above), else the input of the last average pool."""
    children = dict(model.named_children())
    if {"_avg_pooling", "_fc", "_conv_head"} <= children.keys():
        # EfficientNet (lukemelas layout, including EfficientNet-Lite): the final activation is applied by a
        # module shared with the stem, so the pooling layer's input is the only unambiguous handle.
        return TargetLayer("_avg_pooling", "input")
    if {"layer4", "fc"} <= children.keys():
        return TargetLayer("layer4")  # torchvision ResNet, ResNeXt, Wide ResNet
    if "Mixed_7c" in children:
        return TargetLayer("Mixed_7c")  # Inception v3
    if "inception5b" in children:
        return TargetLayer("inception5b")  # GoogLeNet
    vit_layers = getattr(children.get("encoder"), "layers", None)
    if "conv_proj" in children and isinstance(vit_layers, nn.Sequential) and len(vit_layers):
        last, block = list(vit_layers.named_children())[-1]
        if isinstance(getattr(block, "ln_1", None), nn.Module):
            return TargetLayer(f"encoder.layers.{last}.ln_1")  # torchvision VisionTransformer
    if {"features", "norm", "permute", "avgpool", "head"} <= children.keys():
        return TargetLayer("norm")  # torchvision Swin: channels-last maps after the final LayerNorm
    if isinstance(children.get("features"), nn.Module):
        # MobileNet, EfficientNet, DenseNet, ConvNeXt, VGG, AlexNet (torchvision): the whole feature
        # extractor's output, which is what their pooling (and a CAM head) sees.
        return TargetLayer("features")
    pools = [
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)) and name
    ]
    if pools:
        return TargetLayer(pools[-1], "input")
    candidates = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][-4:]
    hint = f" (for example {', '.join(candidates)})" if candidates else ""
    raise BadInputError(
        "cannot tell which layer holds this model's last feature maps; name one with target_layer" + hint
    )


def resolve_target_layer(model: nn.Module, target_layer: str | TargetLayer | None) -> TargetLayer:
    """The user's choice when given, else the automatic one."""
    if isinstance(target_layer, TargetLayer):
        module_named(model, target_layer.name)
        return target_layer
    if target_layer:
        return named_target_layer(model, target_layer)
    return find_target_layer(model)


def block_names(model: nn.Module) -> list[str]:
    """Modules whose outputs VisualBackProp averages: the network's stages, shallow to deep.

    Only the last output at each spatial resolution is used (see ``iconolens.explain.vbp``), so listing a
    few too many modules is harmless.
    """
    children = dict(model.named_children())
    if {"conv1", "layer1", "layer4"} <= children.keys():
        return [n for n in ("relu", "layer1", "layer2", "layer3", "layer4") if n in children]
    if "_blocks" in children and isinstance(children["_blocks"], nn.ModuleList):
        return [f"_blocks.{i}" for i in range(len(children["_blocks"]))]
    features = children.get("features")
    if isinstance(features, nn.Sequential):
        return [f"features.{name}" for name, _ in features.named_children()]
    names: list[str] = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            names.extend(f"{name}.{sub}" for sub, _ in child.named_children())
        else:
            names.append(name)
    return names
