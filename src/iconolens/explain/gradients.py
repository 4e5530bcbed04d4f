"""Gradients of many class scores with respect to the target feature maps, from one forward pass.

All classes' gradients come from a single batched backward pass (``is_grads_batched``: the vector-Jacobian
products of one-hot output directions are evaluated together). Classes are taken in chunks so that the
``(N, C, K, h, w)`` gradient tensor stays within a memory budget however many classes the model has.
Gradients are taken with ``torch.autograd.grad`` with respect to the feature maps only, so no parameter's
``.grad`` is touched.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor

#: Upper bound, in bytes, for one chunk of gradients.
GRADIENT_CHUNK_BYTES = 256 * 1024 * 1024


def _class_chunks(class_indices: Tensor, per_class_bytes: int) -> Iterator[Tensor]:
    size = max(1, GRADIENT_CHUNK_BYTES // max(per_class_bytes, 1))
    for start in range(0, len(class_indices), size):
        yield class_indices[start : start + size]


def _gradients_of(logits: Tensor, activation: Tensor, classes: Tensor) -> Tensor:
    """``dS_c/dA`` for each class in ``classes``, shaped ``(N, len(classes), K, h, w)``."""
    n = logits.shape[0]
    directions = torch.zeros((len(classes), n, logits.shape[1]), dtype=logits.dtype, device=logits.device)
    directions[torch.arange(len(classes)), :, classes] = 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # vmap's note about missing batching rules
            (grads,) = torch.autograd.grad(
                logits, activation, directions, retain_graph=True, is_grads_batched=True
            )
    except RuntimeError:
        # Some operations have no batching rule; fall back to one backward per class of the same graph.
        grads = torch.stack(
            [torch.autograd.grad(logits, activation, d, retain_graph=True)[0] for d in directions]
        )
    return grads.transpose(0, 1)


def maps_from_gradients(
    logits: Tensor,
    activation: Tensor,
    class_indices: Tensor,
    formula: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """Apply ``formula(A, g)`` to the gradients of every requested class, chunk by chunk -> ``(N, C, h, w)``."""
    return formulas_from_gradients(logits, activation, class_indices, {"map": formula})["map"]


def formulas_from_gradients(
    logits: Tensor,
    activation: Tensor,
    class_indices: Tensor,
    formulas: Mapping[str, Callable[[Tensor, Tensor], Tensor]],
) -> dict[str, Tensor]:
    """Several formulas from the same gradients: one backward pass per chunk of classes serves them all."""
    per_class = activation.numel() * activation.element_size()
    features = activation.detach()
    maps: dict[str, list[Tensor]] = {name: [] for name in formulas}
    for chunk in _class_chunks(class_indices, per_class):
        grads = _gradients_of(logits, activation, chunk)
        with torch.no_grad():
            for name, formula in formulas.items():
                maps[name].append(formula(features, grads))
    return {name: torch.cat(parts, dim=1) for name, parts in maps.items()}
