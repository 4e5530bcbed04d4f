"""Randomised copies of a classifier, stage by stage from the head down (Adebayo et al. 2018).

A *stage* is a group of layers randomised together. ``randomisation_stages`` lists a model's stages from
the output towards the input:

- the model's top-level children that have parameters, in reverse registration order (for torchvision,
  EfficientNet-Lite and these tests' models the registration order is the forward order);
- a container that holds the whole network's blocks is split into its children, one stage each:
  ``features`` (torchvision MobileNet, VGG, AlexNet, ConvNeXt, Swin, ...), ``_blocks`` (EfficientNet-Lite)
  and ``encoder.layers`` (torchvision ViT, whose ``encoder`` is split on the way); any other child (a
  ResNet's ``layer4``, an Inception ``Mixed_7c``) is one stage;
- a normalisation layer is randomised together with the layer before it, whose output it normalises:
  ``conv1+bn1``;
- parameters held directly by the model or by a split container (ViT's class token and position
  embedding) join the stage nearest the input, the one that embeds the image.

So a ResNet gives ``fc, layer4, layer3, layer2, layer1, conv1+bn1``; MobileNetV2 ``classifier,
features.18, ..., features.0``; EfficientNet-Lite0 ``_fc, _conv_head+_bn1, _blocks.15, ..., _blocks.0,
_conv_stem+_bn0``; ViT-B/16 ``heads, encoder.layers.encoder_layer_11+encoder.ln, ...,
conv_proj+class_token+encoder.pos_embedding``.

Re-initialisation: every module of a stage that has ``reset_parameters`` gets it called, i.e. the
initialisation PyTorch gives a fresh layer (Kaiming-uniform convolutions and linear layers). For batch
normalisation this sets the affine scale to 1 and shift to 0 and the running statistics to mean 0 and
variance 1: the layer becomes (nearly) the identity, which forgets everything it learned. A parameter no
``reset_parameters`` covers is redrawn from a normal distribution with its own mean and standard deviation,
keeping its scale but not its values. Each stage draws from its own seed, derived from the caller's seed
and the stage's position, so a stage gets the same random weights in every step and every ordering.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from iconolens.errors import BadInputError

#: Containers that hold a whole network's blocks, split into one stage per block (dotted: nested).
BLOCK_CONTAINERS = ("features", "_blocks", "encoder.layers")
_NORMALISATION = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


@dataclass(frozen=True)
class Stage:
    """Layers randomised together: ``name`` for people, ``modules`` the dotted names of the model's modules,
    ``parameters`` the dotted names of parameters held directly by a module that is not in the stage."""

    name: str
    modules: tuple[str, ...]
    parameters: tuple[str, ...] = ()


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _parts(module: nn.Module, prefix: str, loose: list[str]) -> list[tuple[str, nn.Module]]:
    """``module``'s children in order, the containers of ``BLOCK_CONTAINERS`` split (and the modules on
    the way to a nested one); the parameters of every split module are appended to ``loose``."""
    loose.extend(prefix + name for name, _ in module.named_parameters(recurse=False))
    parts: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        path = prefix + name
        if path in BLOCK_CONTAINERS and isinstance(child, (nn.Sequential, nn.ModuleList)):
            loose.extend(f"{path}.{n}" for n, _ in child.named_parameters(recurse=False))
            parts.extend((f"{path}.{sub}", block) for sub, block in child.named_children())
        elif any(c.startswith(path + ".") for c in BLOCK_CONTAINERS):
            parts.extend(_parts(child, path + ".", loose))
        else:
            parts.append((path, child))
    return parts


def randomisation_stages(model: nn.Module) -> list[Stage]:
    """The model's stages from the output towards the input (the rules are in the module's docstring)."""
    loose: list[str] = []
    groups: list[list[str]] = []
    for name, part in _parts(model, "", loose):
        if not _has_parameters(part):
            continue
        if isinstance(part, _NORMALISATION) and groups:
            groups[-1].append(name)
        else:
            groups.append([name])
    if not groups:
        raise BadInputError("the model has no layer with parameters, so there is nothing to randomise")
    stages = [Stage("+".join(group), tuple(group)) for group in groups]
    if loose:
        first = stages[0]
        stages[0] = Stage("+".join([*first.modules, *loose]), first.modules, tuple(loose))
    return stages[::-1]


def stage_seed(seed: int, position: int) -> int:
    """The seed of the stage at ``position``: independent streams for every (seed, position) pair."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, position]).generate_state(1)[0])


def reinitialise(modules: Sequence[nn.Module], seed: int, parameters: Sequence[nn.Parameter] = ()) -> None:
    """Re-initialise ``modules`` (every parameter and buffer) and ``parameters`` in place, drawing from
    ``seed`` only.

    Everything draws one after another from the same stream, so two alike layers get different weights.
    The global random state is saved and restored, so the caller's own random numbers are not disturbed.
    """
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        redraw: list[nn.Parameter] = []
        for module in modules:
            covered: set[int] = set()
            for sub in module.modules():
                reset = getattr(sub, "reset_parameters", None)
                if callable(reset):
                    reset()
                    covered.update(id(p) for p in sub.parameters(recurse=False))
            redraw.extend(p for p in module.parameters() if id(p) not in covered)
        for parameter in [*redraw, *parameters]:
            if parameter.numel():
                values = parameter.detach().double()
                spread = float(values.std()) if values.numel() > 1 else 0.0
                parameter.normal_(float(values.mean()), spread)


def _keys(state: Mapping[str, Tensor], stage: Stage) -> list[str]:
    prefixes = tuple(f"{name}." for name in stage.modules)
    return [key for key in state if key.startswith(prefixes) or key in stage.parameters]


class RandomisedModels:
    """Copies of ``model`` with chosen stages randomised; the model itself is never changed.

    All random weights are drawn once, on a private copy; ``with_randomised(positions)`` then loads them
    into one working copy over the original weights, so a cascade costs one copy of the model, not one
    per step.
    """

    def __init__(self, model: nn.Module, stages: Sequence[Stage], seed: int = 0) -> None:
        self.stages = tuple(stages)
        known = dict(model.named_modules())
        held = dict(model.named_parameters())
        for stage in self.stages:
            for name in stage.modules:
                if not name or name not in known:
                    raise BadInputError(f"stage {stage.name!r} names {name!r}, which is not a module of the model")
            for name in stage.parameters:
                if name not in held:
                    raise BadInputError(f"stage {stage.name!r} names {name!r}, which is not a parameter of the model")
        self._original = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._working = copy.deepcopy(model)
        scratch = copy.deepcopy(model).cpu()  # drawn on the CPU: the same weights on every device
        modules = dict(scratch.named_modules())
        parameters = dict(scratch.named_parameters())
        for position, stage in enumerate(self.stages):
            reinitialise([modules[name] for name in stage.modules], stage_seed(seed, position),
                         [parameters[name] for name in stage.parameters])
        random_state = scratch.state_dict()
        self._random = [
            {key: random_state[key].detach().clone() for key in _keys(random_state, stage)}
            for stage in self.stages
        ]
        del scratch

    def with_randomised(self, positions: Sequence[int]) -> nn.Module:
        """The working copy with the stages at ``positions`` randomised and every other weight original."""
        state = dict(self._original)
        for position in positions:
            state.update(self._random[position])
        self._working.load_state_dict(state)
        return self._working
