"""One forward pass with the tensors saliency methods need: target feature maps, the last linear layer's
input and output, and (for VisualBackProp) the outputs of every stage.

When gradients are wanted, the pass runs without autograd up to the target layer and switches autograd on
there, replacing the feature maps by a detached leaf. The graph then spans only the head, so a backward pass
for all classes costs a fraction of the network, and nothing reaches the user's parameters.

With a 16-bit ``half`` type (``iconolens.inference``) the network runs in it up to the target layer; the feature
maps are recorded in float32 and everything after them (the head, the maps, any backward pass) runs in float32.

Transformer tokens and channels-last maps are recorded as an ``(N, K, h, w)`` grid (see
``iconolens.explain.tokens``); the network goes on with its own layout rebuilt from that grid.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from iconolens.errors import BadInputError
from iconolens.explain.layers import TargetLayer, module_named
from iconolens.inference import autocast_to
from iconolens.explain.tokens import (
    check_input_size,
    head_width_of,
    layout_of,
    map_layout,
    patch_size_of,
)


@dataclass
class ForwardRecord:
    """What one forward pass left behind."""

    logits: Tensor
    activation: Tensor  # (N, K, h, w) target feature maps (tokens as a grid); a leaf requiring grad if asked
    linear: nn.Linear | None = None
    linear_input: Tensor | None = None
    linear_output: Tensor | None = None
    blocks: list[Tensor] = field(default_factory=list)  # stage outputs up to and including the target


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and give each its own previous mode back afterwards."""
    previous = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in previous:
            module.training = training


def record_forward(
    model: nn.Module,
    images: Tensor,
    target: TargetLayer,
    *,
    gradients: bool,
    block_modules: Sequence[str] = (),
    half: torch.dtype | None = None,
) -> ForwardRecord:
    """Run ``model(images)`` once, recording the target feature maps and the last linear layer.

    ``gradients=False`` runs in inference mode; ``gradients=True`` builds an autograd graph from the
    target feature maps to the logits only. ``half``: the 16-bit type of the layers before the target.
    """
    state: dict[str, Any] = {}
    blocks: list[Tensor] = []
    handles = []

    check_input_size(model, images)
    image = (int(images.shape[-2]), int(images.shape[-1]))
    head_width = head_width_of(model)
    patch_size = patch_size_of(model)

    def on_target(tensor: Any) -> Tensor | None:
        layout = layout_of(
            tensor, image, head_width=head_width, patch_size=patch_size, where=target.describe()
        )
        grid = layout.to_grid(tensor)
        if half is not None:  # the rest of the network, and every map, in float32
            torch.set_autocast_enabled(images.device.type, False)
            grid = grid.float()
        if gradients:
            torch.set_grad_enabled(True)
            grid = grid.detach().requires_grad_(True)
        state["activation"] = grid
        state["blocks_before"] = len(blocks)
        # Later layers get a new tensor, so an in-place operation downstream (ReLU(inplace=True)) cannot
        # change the recorded maps, nor trip autograd on a leaf.
        return layout.from_grid(grid, tensor)

    def on_linear(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        state["linear"] = (module, args[0] if args else None, output)

    def on_block(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, Tensor) and output.ndim == 4:
            grid = map_layout(tuple(output.shape), image, head_width).to_grid(output)
            blocks.append(grid.float() if half is not None else grid)

    try:
        for name in block_modules:
            handles.append(module_named(model, name).register_forward_hook(on_block))
        module = module_named(model, target.name)
        if target.side == "output":
            handles.append(module.register_forward_hook(lambda m, a, out: on_target(out)))
        else:

            def on_input(m: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
                if not args:
                    raise BadInputError(f"layer {target.name!r} is called without an input tensor")
                return (on_target(args[0]),) + tuple(args[1:])

            handles.append(module.register_forward_pre_hook(on_input))
        for sub in model.modules():
            if isinstance(sub, nn.Linear):
                handles.append(sub.register_forward_hook(on_linear))

        grad_was_enabled = torch.is_grad_enabled()
        try:
            with autocast_to(images.device, half):  # leaving it restores autocast, switched off at the target
                if gradients:
                    torch.set_grad_enabled(False)
                    logits = model(images)
                else:
                    with torch.inference_mode():
                        logits = model(images)
        finally:
            torch.set_grad_enabled(grad_was_enabled)
    finally:
        for handle in handles:
            handle.remove()

    if "activation" not in state:
        raise BadInputError(f"layer {target.describe()!r} is not used when the model classifies an image")
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise BadInputError("the model must return class logits shaped (N, C)")
    record = ForwardRecord(logits=logits, activation=state["activation"])
    if "linear" in state:
        record.linear, record.linear_input, record.linear_output = state["linear"]
    record.blocks = blocks[: state["blocks_before"]]
    return record
