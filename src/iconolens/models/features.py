"""Off-the-shelf features: the pooled activations a frozen backbone feeds its head, cached on disk.

One forward pass per image, then every head (softmax/sigmoid layer, SVM, random forest) trains on the
same cached matrix; the cache key covers the backbone, its weights, the input size and the images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from iconolens.atomic import write_array_atomically
from iconolens.inference import network_on
from iconolens.models.backbones import classifier_head
from iconolens.models.transforms import normalise
from iconolens.progress import progress


@torch.no_grad()
def pooled_features(
    model: nn.Module,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 32,
) -> torch.Tensor:
    """(N, F) inputs of the model's final Linear layer (global-average-pooled features), eval mode, on the CPU
    whatever device the model is on."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    given, was_training = model, model.training
    model.eval()
    if images.shape[0]:  # batch norms folded in a copy; the model given goes on training
        model = network_on(model, device, int(images.shape[-1]))
    head = classifier_head(model)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach().cpu()))
    try:
        for start in progress(range(0, int(images.shape[0]), batch_size), "extracting features"):
            model(normalise(images[start : start + batch_size], mean, std).to(device))
    finally:
        hook.remove()
        given.train(was_training)
    if not captured:
        return torch.zeros((0, head.in_features))
    return torch.cat(captured).flatten(1)


def feature_cache_key(*parts: object) -> str:
    """A short stable hash of everything the features depend on."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def cached_features(cache_dir: Path, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Features from ``cache_dir/<key>.npy`` when present and readable, else computed and stored."""
    path = Path(cache_dir) / f"features-{key}.npy"
    if path.is_file():
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError):
            pass  # a damaged cache is recomputed
    features = compute()
    write_array_atomically(path, features.numpy().astype(np.float32))
    return features
