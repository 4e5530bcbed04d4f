"""Ablation-CAM's score drops for any head: the layers after the target run again on ablated feature maps.

For a GAP + linear head the drops are known in closed form (``iconolens.explain.cam``). Otherwise each image's
feature maps are copied ``K`` times, copy ``k`` with channel ``k`` set to zero, and the copies replace the target
layer's output (in the layer's own layout: tokens, channels-last) in a forward pass of that image; a tensor
from before the target that the later layers add back (a residual) broadcasts over the copies: the layers before the target run once per chunk of copies, the
layers after it once per copy, and every class's drop comes from the same passes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from iconolens.errors import BadInputError
from iconolens.explain.layers import TargetLayer, module_named
from iconolens.explain.tokens import head_width_of, layout_of, patch_size_of

#: Upper bound, in bytes, for one chunk of ablated copies of the feature maps.
ABLATION_CHUNK_BYTES = 128 * 1024 * 1024


def logits_with_replaced_activation(model: nn.Module, image: Tensor, target: TargetLayer, replacement: Tensor) -> Tensor:
    """``model(image)`` with the target layer's ``(1, K, h, w)`` output replaced by ``replacement`` ``(B, K, h, w)``.

    Works when the layers after the target use nothing computed before it (true of the last feature maps
    of the usual classifiers); otherwise the batch sizes disagree and the sentence says so.
    """
    module = module_named(model, target.name)
    size = (int(image.shape[-2]), int(image.shape[-1]))

    def swap(tensor: Any) -> Tensor:
        layout = layout_of(
            tensor, size, head_width=head_width_of(model), patch_size=patch_size_of(model), where=target.describe()
        )
        if layout.to_grid(tensor).shape[1:] != replacement.shape[1:]:
            raise BadInputError(
                f"layer {target.describe()!r} does not give the feature maps seen when they were recorded"
            )
        return layout.from_grid(replacement, tensor)

    if target.side == "output":
        handle = module.register_forward_hook(lambda m, a, out: swap(out))
    else:
        handle = module.register_forward_pre_hook(lambda m, args: (swap(args[0]),) + tuple(args[1:]))
    try:
        with torch.inference_mode():
            logits = model(image)
    except RuntimeError as exc:
        raise BadInputError(
            f"ablationcam cannot rerun the layers after {target.describe()!r} on their own (they also use "
            f"tensors from before it: {str(exc).splitlines()[0]}); choose another target layer or method"
        ) from None
    finally:
        handle.remove()
    if not isinstance(logits, Tensor) or logits.shape[0] != replacement.shape[0]:
        raise BadInputError(
            f"ablationcam cannot rerun the layers after {target.describe()!r} on their own; "
            "choose another target layer or method"
        )
    return logits


def ablation_drops(
    model: nn.Module, images: Tensor, target: TargetLayer, activation: Tensor, logits: Tensor, classes: Tensor
) -> Tensor:
    """``S_c - S_c^(k)`` shaped ``(N, C, K)``: how much each class logit falls when channel ``k`` is zeroed."""
    n, k = activation.shape[:2]
    per_copy = activation[0].numel() * activation.element_size()
    chunk = max(1, min(k, ABLATION_CHUNK_BYTES // max(per_copy, 1)))
    drops = torch.empty((n, len(classes), k), dtype=logits.dtype, device=logits.device)
    for i in range(n):
        for start in range(0, k, chunk):
            channels = torch.arange(start, min(k, start + chunk), device=activation.device)
            copies = activation[i : i + 1].repeat(len(channels), 1, 1, 1)
            copies[torch.arange(len(channels)), channels] = 0
            ablated = logits_with_replaced_activation(model, images[i : i + 1], target, copies)
            drops[i, :, start : start + len(channels)] = (logits[i, classes][:, None] - ablated[:, classes].T)
    return drops
