"""Turning a PIL image into the tensor a classifier expects, as its checkpoint says.

Images are resized to a square ``input_size`` (aspect ratio is not kept: paintings are every shape and a
crop could cut away the very figure being classified), then normalised with the checkpoint's mean and std.
Training keeps images as uint8 tensors (4x less memory) and normalises per batch with ``normalise``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from iconolens.models.meta import ModelMeta


def image_to_uint8(image: Image.Image, size: int) -> torch.Tensor:
    """(3, size, size) uint8 tensor of ``image`` resized with bilinear filtering."""
    resized = image.convert("RGB").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def normalise(
    batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """uint8 or [0, 1] float images (N, 3, H, W) -> float32 normalised with per-channel mean and std.

    The arithmetic is done in place on one new tensor: a batch of images is large, and allocating one per
    step cost ten times the arithmetic.
    """
    x = batch.float()
    if x.data_ptr() == batch.data_ptr():  # already float32: do not change the caller's tensor
        x = x.clone()
    if batch.dtype == torch.uint8:
        x.div_(255.0)
    x.sub_(torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
    return x.div_(torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1))


def image_to_tensor(image: Image.Image, meta: ModelMeta) -> torch.Tensor:
    """(3, S, S) float32 input for a model described by ``meta`` (S = ``meta.input_size``)."""
    raw = image_to_uint8(image, meta.input_size).unsqueeze(0)
    return normalise(raw, meta.mean, meta.std)[0]
