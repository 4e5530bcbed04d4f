"""LayerCAM fused over stages (Jiang et al. 2021): fine maps from shallow stages, the class from deep ones.

LayerCAM's position-wise weights (``ReLU(g)``) keep a shallow stage's map class-specific, so stages of stride
8, 16 and 32 each give a map of the same class at their own resolution. Each stage's map ``M_s`` is scaled by
``tanh(gamma * M_s / max M_s)`` (``gamma = 2``, the paper's value, which lifts the small values of shallow
stages), bilinearly upsampled to the finest stage and the stages are fused by their element-wise maximum.

The stages default to the last output at each of the network's three finest-but-last resolutions ending with
the deepest one (for a stride-32 classifier: strides 8, 16 and 32). One forward pass records them all, with
autograd from the shallowest; one batched backward pass per stage gives every class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iconolens.errors import BadInputError
from iconolens.explain.cam import layercam_from_gradients
from iconolens.explain.gradients import maps_from_gradients
from iconolens.explain.layers import TargetLayer, block_names, module_named
from iconolens.explain.recording import ForwardRecord, record_forward
from iconolens.explain.tokens import GridLayout, head_width_of, map_layout

#: The paper's scaling of each stage's map before fusion.
GAMMA = 2.0
#: How many stages are fused when none are named.
DEFAULT_STAGES = 3


def default_fusion_stages(model: nn.Module, image: Tensor, count: int = DEFAULT_STAGES) -> list[str]:
    """Names of the last module at each of the ``count`` deepest spatial resolutions, shallow to deep."""
    shapes: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    image_size, head_width = (int(image.shape[-2]), int(image.shape[-1])), head_width_of(model)
    for name in block_names(model):
        def keep(module: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            if isinstance(out, Tensor) and out.ndim == 4:
                grid = map_layout(tuple(out.shape), image_size, head_width).to_grid(out)
                if grid.shape[-2:] != (1, 1):
                    shapes.append((name, tuple(grid.shape[-2:])))
        handles.append(module_named(model, name).register_forward_hook(keep))
    try:
        with torch.inference_mode():
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    last_of_size: dict[tuple[int, ...], str] = {}
    for name, size in shapes:
        last_of_size.pop(size, None)  # re-insert so the order is that of the last occurrence
        last_of_size[size] = name
    names = list(last_of_size.values())[-count:]
    if not names:
        raise BadInputError("cannot find the stages of this model to fuse; name them with fuse_layers")
    return names


def record_stages(
    model: nn.Module, images: Tensor, stages: Sequence[str]
) -> tuple[ForwardRecord, list[tuple[Tensor, GridLayout]]]:
    """One forward pass with autograd from the first stage on; every stage's output and its layout, shallow
    to deep (the first as the recorded grid, the others as the network made them, so gradients reach them)."""
    captured: dict[str, Tensor] = {}
    handles = []
    for name in stages[1:]:
        def keep(module: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            captured[name] = out
        handles.append(module_named(model, name).register_forward_hook(keep))
    try:
        record = record_forward(model, images, TargetLayer(stages[0]), gradients=True)
    finally:
        for handle in handles:
            handle.remove()
    outputs = [(record.activation, GridLayout())]
    image_size, head_width = (int(images.shape[-2]), int(images.shape[-1])), head_width_of(model)
    for name in stages[1:]:
        out = captured.get(name)
        if not isinstance(out, Tensor) or out.ndim != 4 or not out.requires_grad:
            raise BadInputError(f"stage {name!r} does not give feature maps after stage {stages[0]!r}")
        outputs.append((out, map_layout(tuple(out.shape), image_size, head_width)))
    return record, outputs


def _layercam_in(layout: GridLayout):
    """LayerCAM of a stage whose tensor (and gradient) may be channels-last ``(N, h, w, K)``."""
    if layout.kind != "channels_last":
        return layercam_from_gradients
    return lambda features, grads: layercam_from_gradients(
        features.permute(0, 3, 1, 2), grads.permute(0, 1, 4, 2, 3)
    )


def fuse_stage_maps(maps: Sequence[Tensor], gamma: float = GAMMA) -> Tensor:
    """``max_s tanh(gamma * M_s / max M_s)`` at the finest stage's resolution; a stage's all-zero map stays 0."""
    size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    fused = None
    for stage in maps:
        peak = stage.amax(dim=(-2, -1), keepdim=True)
        scaled = torch.tanh(gamma * stage / torch.where(peak > 0, peak, torch.ones_like(peak)))
        scaled = F.interpolate(scaled, size=tuple(size), mode="bilinear", align_corners=False)
        fused = scaled if fused is None else torch.maximum(fused, scaled)
    return fused


def fused_layercam(
    model: nn.Module, images: Tensor, stages: Sequence[str], choose_classes: Callable[[int], Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """(fused maps ``(N, C, h0, w0)``, logits, class indices); ``choose_classes(number of outputs)`` picks the classes."""
    record, outputs = record_stages(model, images, stages)
    indices = choose_classes(record.logits.shape[1])
    on_device = indices.to(record.logits.device)
    per_stage = [maps_from_gradients(record.logits, out, on_device, _layercam_in(layout)) for out, layout in outputs]
    return fuse_stage_maps(per_stage), record.logits.detach(), indices
