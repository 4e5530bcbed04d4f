"""The CAM family's formulas, for many classes at once: CAM, Grad-CAM, Grad-CAM++ (and through it Smooth
Grad-CAM++), XGrad-CAM, HiResCAM, LayerCAM, Ablation-CAM and Eigen-CAM.

Notation: ``A`` the target feature maps ``(N, K, h, w)``; ``S_c`` the score of class ``c``, which is the
class **logit** (before softmax or sigmoid, as in the Grad-CAM paper); ``g = dS_c/dA_k(x, y)``.

Each formula has two implementations that give the same numbers:
- from gradients ``g`` shaped ``(N, C, K, h, w)`` (any head; ``g`` from one batched backward pass);
- from the weight ``W`` ``(C, K)`` of a global-average-pooling + linear head, where ``g = W / (h*w)`` at
  every position, so no backward pass is needed and all classes cost one forward pass.
Ablation-CAM needs score drops instead of gradients (closed form for a GAP + linear head, else
``iconolens.explain.ablation``); Eigen-CAM needs the feature maps alone.
"""

from __future__ import annotations

import torch
from torch import Tensor


def weighted_sum(weights: Tensor, activation: Tensor) -> Tensor:
    """``sum_k weights[n, c, k] * A[n, k]`` -> ``(N, C, h, w)``; ``weights`` may also be ``(C, K)``."""
    if weights.ndim == 2:
        return torch.einsum("ck,nkhw->nchw", weights, activation)
    return torch.einsum("nck,nkhw->nchw", weights, activation)


def cam_from_weight(activation: Tensor, weight: Tensor) -> Tensor:
    """CAM (Zhou et al. 2016): ``M_c = sum_k w_ck A_k``, no rectification.

    ``weight`` is the ``(C, K)`` linear layer that follows global average pooling.
    """
    return weighted_sum(weight.to(activation.dtype), activation)


def gradcam_from_gradients(activation: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ``alpha_ck = mean_xy g``, ``M_c = ReLU(sum_k alpha_ck A_k)``."""
    alpha = gradients.mean(dim=(-2, -1))
    return torch.relu(weighted_sum(alpha, activation))


def gradcam_from_weight(activation: Tensor, weight: Tensor) -> Tensor:
    """Grad-CAM for a GAP + linear head: ``alpha_ck = w_ck / (h*w)``."""
    h, w = activation.shape[-2:]
    return torch.relu(weighted_sum(weight.to(activation.dtype) / (h * w), activation))


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
    return torch.relu(weighted_sum(weights, activation))


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
    return torch.relu(weighted_sum(weights, activation))


def xgradcam_from_gradients(activation: Tensor, gradients: Tensor) -> Tensor:
    """XGrad-CAM (Fu et al. 2020): ``alpha_ck = sum_xy A_k(x, y) / sum_ab A_k(a, b) * g(x, y)``,
    ``M_c = ReLU(sum_k alpha_ck A_k)``; a channel whose activations sum to 0 gets ``alpha = 0``.
    """
    share = _activation_share(activation)
    alpha = (share[:, None] * gradients).sum(dim=(-2, -1))
    return torch.relu(weighted_sum(alpha, activation))


def xgradcam_from_weight(activation: Tensor, weight: Tensor) -> Tensor:
    """XGrad-CAM for a GAP + linear head: the shares sum to 1, so ``alpha_ck = w_ck / (h*w)`` (as Grad-CAM)
    wherever ``sum_ab A_k(a, b) != 0``, and 0 elsewhere."""
    h, w = activation.shape[-2:]
    nonzero = (activation.sum(dim=(-2, -1)) != 0).to(activation.dtype)  # (N, K)
    alpha = (weight.to(activation.dtype) / (h * w))[None] * nonzero[:, None, :]
    return torch.relu(weighted_sum(alpha, activation))


def _activation_share(activation: Tensor) -> Tensor:
    """``A_k(x, y) / sum_ab A_k(a, b)``, and 0 for a channel whose sum is 0."""
    total = activation.sum(dim=(-2, -1), keepdim=True)
    zero = total == 0
    return torch.where(zero, torch.zeros_like(activation), activation / torch.where(zero, torch.ones_like(total), total))


def hirescam_from_gradients(activation: Tensor, gradients: Tensor) -> Tensor:
    """HiResCAM (Draelos and Carin 2020): ``M_c(x, y) = sum_k g(x, y) A_k(x, y)``, element-wise, with no
    rectification (as CAM): a negative value says the position lowers the class score."""
    return (gradients * activation[:, None]).sum(dim=2)


def hirescam_from_weight(activation: Tensor, weight: Tensor) -> Tensor:
    """HiResCAM for a GAP + linear head: ``g = w_ck / (h*w)``, so the map is CAM divided by ``h*w``."""
    h, w = activation.shape[-2:]
    return weighted_sum(weight.to(activation.dtype) / (h * w), activation)


def layercam_from_gradients(activation: Tensor, gradients: Tensor) -> Tensor:
    """LayerCAM (Jiang et al. 2021): ``M_c = ReLU(sum_k ReLU(g(x, y)) A_k(x, y))``, position by position."""
    return torch.relu((torch.relu(gradients) * activation[:, None]).sum(dim=2))


def layercam_from_weight(activation: Tensor, weight: Tensor) -> Tensor:
    """LayerCAM for a GAP + linear head: ``ReLU(g) = ReLU(w_ck) / (h*w)`` at every position."""
    h, w = activation.shape[-2:]
    return torch.relu(weighted_sum(torch.relu(weight.to(activation.dtype)) / (h * w), activation))


def ablationcam_from_drops(activation: Tensor, scores: Tensor, drops: Tensor) -> Tensor:
    """Ablation-CAM (Desai and Ramaswamy 2020): ``w_ck = (S_c - S_c^(k)) / S_c``, ``M_c = ReLU(sum_k w_ck A_k)``.

    ``scores`` ``(N, C)`` are the class logits ``S_c``; ``drops`` ``(N, C, K)`` are ``S_c - S_c^(k)``, the fall
    of the logit when channel ``k`` of ``A`` is set to zero. The division by ``S_c`` is the paper's: it
    leaves the map's shape unchanged for a positive score and flips it for a negative one. A class whose
    score is exactly 0 gets weights 0.
    """
    zero = scores == 0
    safe = torch.where(zero, torch.ones_like(scores), scores)
    weights = torch.where(zero[..., None], torch.zeros_like(drops), drops / safe[..., None])
    return torch.relu(weighted_sum(weights.to(activation.dtype), activation))


def ablation_drops_from_weight(activation: Tensor, weight: Tensor) -> Tensor:
    """For a GAP + linear head, zeroing channel ``k`` lowers logit ``c`` by exactly ``w_ck * mean_xy A_k``:
    ``(N, C, K)`` drops with no extra forward pass."""
    return weight.to(activation.dtype)[None] * activation.mean(dim=(-2, -1))[:, None, :]


def eigencam(activation: Tensor) -> Tensor:
    """Eigen-CAM (Muhammad and Yeasin 2020): the feature maps projected on their first principal direction.

    Per image, with ``A`` as a ``(h*w, K)`` matrix ``= U S V^T`` (no centring, as in the paper), the map is
    ``A v_1``, ``v_1`` the first right singular vector, shaped ``(N, 1, h, w)``. A singular vector's sign is
    arbitrary; it is fixed so that the map sums to a non-negative value, which for non-negative (post-ReLU)
    feature maps makes ``v_1`` non-negative too (Perron-Frobenius), so high means strongly activated.
    Class-agnostic: one map per image.
    """
    n, k, h, w = activation.shape
    matrix = activation.reshape(n, k, h * w).transpose(1, 2).double()  # (N, hw, K)
    _, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    projection = torch.einsum("npk,nk->np", matrix, vh[:, 0, :])  # (N, hw)
    sign = torch.where(projection.sum(dim=1, keepdim=True) < 0, -1.0, 1.0).to(projection.dtype)
    return (projection * sign).to(activation.dtype).reshape(n, 1, h, w)
