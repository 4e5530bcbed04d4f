"""The CAM family: CAM, Grad-CAM, Grad-CAM++ and Smooth Grad-CAM++, for many classes at once.

Notation: ``A`` the target feature maps ``(N, K, h, w)``; ``S_c`` the score of class ``c``, which is the
class **logit** (before softmax or sigmoid, as in the Grad-CAM paper); ``g = dS_c/dA_k(x, y)``.

Each formula has two implementations that give the same numbers:
- from gradients ``g`` shaped ``(N, C, K, h, w)`` (any head; ``g`` from one batched backward pass);
- from the weight ``W`` ``(C, K)`` of a global-average-pooling + linear head, where ``g = W / (h*w)`` at
  every position, so no backward pass is needed and all classes cost one forward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _weighted_sum(weights: Tensor, activation: Tensor) -> Tensor:
    """``sum_k weights[n, c, k] * A[n, k]`` -> ``(N, C, h, w)``; ``weights`` may also be ``(C, K)``."""
    if weights.ndim == 2:
        return torch.einsum("ck,nkhw->nchw", weights, activation)
    return torch.einsum("nck,nkhw->nchw", weights, activation)


def cam_from_weight(activation: Tensor, weight: Tensor) -> Tensor:
    """CAM (Zhou et al. 2016): ``M_c = sum_k w_ck A_k``, no rectification.

    ``weight`` is the ``(C, K)`` linear layer that follows global average pooling.
    """
    return _weighted_sum(weight.to(activation.dtype), activation)


def gradcam_from_gradients(activation: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ``alpha_ck = mean_xy g``, ``M_c = ReLU(sum_k alpha_ck A_k)``."""
    alpha = gradients.mean(dim=(-2, -1))
    return torch.relu(_weighted_sum(alpha, activation))


def gradcam_from_weight(activation: Tensor, weight: Tensor) -> Tensor:
    """Grad-CAM for a GAP + linear head: ``alpha_ck = w_ck / (h*w)``."""
    h, w = activation.shape[-2:]
    return torch.relu(_weighted_sum(weight.to(activation.dtype) / (h * w), activation))


def _gradcampp_alpha(g2: Tensor, g3: Tensor, activation_sum: Tensor, epsilon: float = 0.0) -> Tensor:
    """``alpha = g^2 / (2 g^2 + sum_ab A_k(a, b) g^3 + epsilon)``, and 0 where the denominator is 0."""
    denominator = 2.0 * g2 + activation_sum * g3 + epsilon
    zero = denominator == 0
    return torch.where(zero, torch.zeros_like(g2), g2 / torch.where(zero, torch.ones_like(g2), denominator))


def gradcampp_from_gradients(activation: Tensor, gradients: Tensor, epsilon: float = 0.0) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018) with the closed-form alpha of an exponential score.

    ``alpha_ck(x, y) = g^2 / (2 g^2 + sum_ab A_k(a, b) g^3)`` (0 where the denominator is 0),
    ``w_ck = sum_xy alpha_ck(x, y) ReLU(g)``, ``M_c = ReLU(sum_k w_ck A_k)``.

    ``epsilon`` (default 0: the exact formula) is added to the denominator only to reproduce libraries
    that do so; it is not small next to ``2 g^2`` when gradients are small, as with a GAP head.
    """
    g2 = gradients * gradients
    g3 = g2 * gradients
    activation_sum = activation.sum(dim=(-2, -1))[:, None, :, None, None]
    alpha = _gradcampp_alpha(g2, g3, activation_sum, epsilon)
    weights = (alpha * torch.relu(gradients)).sum(dim=(-2, -1))
    return torch.relu(_weighted_sum(weights, activation))


def gradcampp_from_weight(activation: Tensor, weight: Tensor, epsilon: float = 0.0) -> Tensor:
    """Grad-CAM++ for a GAP + linear head, where ``g = w_ck / (h*w)`` is the same at every position.

    Then ``w_ck = h*w * alpha_ck * ReLU(g)`` with ``alpha_ck`` computed once per channel.
    """
    h, w = activation.shape[-2:]
    g = (weight.to(activation.dtype) / (h * w))[None]  # (1, C, K)
    g2 = g * g
    g3 = g2 * g
    activation_sum = activation.sum(dim=(-2, -1))[:, None, :]  # (N, 1, K)
    alpha = _gradcampp_alpha(g2, g3, activation_sum, epsilon)
    weights = (h * w) * alpha * torch.relu(g)
    return torch.relu(_weighted_sum(weights, activation))
