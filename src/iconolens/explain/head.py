"""Recognising a head made of global average pooling and one linear layer, from what it actually computed.

For such a head, logit ``S_c = sum_k w_ck * mean_xy A_k(x, y) + b_c``, so ``dS_c/dA_k(x, y) = w_ck / (h*w)``
at every position: the gradient of every class is known without a backward pass. The test is made on the
batch being explained, not on module names: the model's output must be exactly the last linear layer's
output, and that layer's input must equal the spatial mean of the target feature maps. Anything placed
between them (a non-linear layer, attention pooling, max pooling) breaks the equality and sends the
computation down the general path of one batched backward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from iconolens.explain.recording import ForwardRecord


def linear_gap_weight(record: ForwardRecord, rtol: float = 1e-4) -> Tensor | None:
    """The ``(C, K)`` weight of a GAP + linear head, or None when the head is anything else."""
    linear, x, out = record.linear, record.linear_input, record.linear_output
    logits, activation = record.logits, record.activation
    if linear is None or not isinstance(x, Tensor) or not isinstance(out, Tensor):
        return None
    if out.shape != logits.shape or x.ndim != 2 or x.shape[1] != activation.shape[1]:
        return None
    same_output = out.data_ptr() == logits.data_ptr() or torch.equal(out, logits)
    if not same_output:
        return None
    with torch.no_grad():
        pooled = activation.detach().mean(dim=(2, 3))
        scale = float(pooled.abs().max()) if pooled.numel() else 0.0
        if not torch.allclose(x.detach().to(pooled.dtype), pooled, rtol=rtol, atol=rtol * max(scale, 1e-6)):
            return None
    return linear.weight.detach()
