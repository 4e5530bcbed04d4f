"""Partial fine-tuning without recomputing the frozen stages every epoch.

With a frozen prefix of the feature stages (``frozen_fraction``), those stages are in eval mode, take no
gradient and see the same stored images every epoch, so their outputs never change. They are computed once
(:func:`prefix_outputs`) and training feeds them to the rest of the network, with the prefix's stages
turned into pass-throughs for that time (:func:`skipping`). The losses, gradients and weights are those of
running the whole network; only the prefix's forward passes are saved, and those are the high-resolution
early stages, where most of a convolutional network's time goes.

Caching applies when the prefix is the first stages of a ``features`` sequence (torchvision MobileNet, VGG,
AlexNet, ConvNeXt, Swin) and the cached outputs fit in :data:`MAX_CACHE_BYTES`; otherwise the network runs
whole, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

#: Largest cache of prefix outputs (train and val splits each) kept in memory.
MAX_CACHE_BYTES = 2 * 1024**3


def cacheable_prefix(model: nn.Module, frozen: Sequence[nn.Module]) -> list[nn.Module]:
    """The frozen stages, when they are the leading stages of ``model.features``; else an empty list."""
    features = getattr(model, "features", None)
    if not frozen or not isinstance(features, nn.Sequential):
        return []
    stages = list(features)
    if len(frozen) > len(stages) or any(a is not b for a, b in zip(stages, frozen)):
        return []
    if any(p.requires_grad for m in frozen for p in m.parameters()):
        return []
    return list(frozen)


@torch.no_grad()
def prefix_outputs(
    model: nn.Module,
    prefix: Sequence[nn.Module],
    images: torch.Tensor,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 64,
    max_bytes: int | None = None,
) -> torch.Tensor | None:
    """The prefix's outputs for stored ``images`` (in batches, eval mode), on the model's device.

    None when they would take more than ``max_bytes`` (default :data:`MAX_CACHE_BYTES`).
    """
    limit = MAX_CACHE_BYTES if max_bytes is None else max_bytes
    stages = nn.Sequential(*prefix)
    modes = [m.training for m in prefix]
    stages.eval()
    try:
        n = int(images.shape[0])
        if n == 0:
            return None
        first = stages(prepare(images[:1]))
        if first.numel() * first.element_size() * n > limit:
            return None
        chunks = [stages(prepare(images[i : i + batch_size])) for i in range(0, n, batch_size)]
    finally:
        for module, mode in zip(prefix, modes):
            module.train(mode)
    return torch.cat(chunks)


def _identity(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    return x


@contextmanager
def skipping(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Within the block, ``modules`` return their input unchanged (parameters and state dict untouched)."""
    for module in modules:
        module.forward = _identity  # type: ignore[method-assign]
    try:
        yield
    finally:
        for module in modules:
            del module.forward
