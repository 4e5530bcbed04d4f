"""Score-CAM (Wang et al. 2020): each feature map, used as a mask on the image, is weighted by the class
confidence it keeps.

With ``A_k`` the target feature maps, ``H_k = s(Up(A_k))`` is channel ``k`` bilinearly upsampled to the input
size and min-max scaled to [0, 1] (a constant channel gives an all-zero mask). The channel's weight is its
increase of confidence over a baseline image, ``C_k = f_c(X * H_k) - f_c(X_b)``, and

    M_c = ReLU(sum_k C_k A_k)

``f_c`` is the class probability (softmax, or sigmoid for multi-label models) and ``X_b`` the all-zero
input, which in the model's normalised input space is the dataset's mean colour: what a mask of zeros
leaves. The ``K`` masked passes of an image do not depend on the class, so every class's weights come from
the same passes; they are batched by the caller's image budget.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from iconolens.explain.cam import weighted_sum


def channel_masks(activation: Tensor, size: tuple[int, int]) -> Tensor:
    """``H_k``: ``(N, K, H, W)`` masks in [0, 1], each channel upsampled then min-max scaled on its own."""
    up = F.interpolate(activation, size=size, mode="bilinear", align_corners=False)
    low = up.amin(dim=(-2, -1), keepdim=True)
    span = up.amax(dim=(-2, -1), keepdim=True) - low
    flat = span <= 0
    return torch.where(flat, torch.zeros_like(up), (up - low) / torch.where(flat, torch.ones_like(span), span))


def masked_scores(
    predict: Callable[[Tensor], Tensor], images: Tensor, activation: Tensor, images_per_pass: int, baseline: Tensor
) -> Tensor:
    """``f(X * H_k)`` for every image and channel: ``(N, K, C_all)``, ``predict`` applied to batches of masked images.

    A channel that is constant over the map gives an all-zero mask, so its score is the baseline's
    ``(1, C_all)`` exactly and its pass is skipped: a third of EfficientNet-Lite0's channels on paintings.
    Masks are built a batch at a time, so memory holds one batch, not ``N * K`` images.
    """
    n, k = activation.shape[:2]
    size = tuple(images.shape[-2:])
    out = baseline.reshape(1, 1, -1).repeat(n, k, 1)
    varying = activation.amax(dim=(-2, -1)) != activation.amin(dim=(-2, -1))  # (N, K)
    for i in range(n):
        channels = torch.nonzero(varying[i]).flatten()
        for start in range(0, len(channels), images_per_pass):
            chosen = channels[start : start + images_per_pass]
            part = channel_masks(activation[i : i + 1, chosen], size)[0]  # (b, H, W)
            out[i, chosen] = predict(images[i : i + 1] * part[:, None]).to(out.dtype)
    return out


def scorecam_from_scores(activation: Tensor, scores: Tensor, baseline: Tensor) -> Tensor:
    """``ReLU(sum_k (f_c(X * H_k) - f_c(X_b)) A_k)`` from masked scores ``(N, K, C)`` and baseline scores ``(N, C)``."""
    increase = scores.transpose(1, 2) - baseline[:, :, None]  # (N, C, K)
    return torch.relu(weighted_sum(increase.to(activation.dtype), activation))
