"""VisualBackProp (Bojarski et al. 2016): which pixels the convolutional stages respond to together.

For each stage ``l`` (shallow to deep) take its feature maps ``F_l`` and their channel mean of the rectified
values, ``B_l = mean_k ReLU(F_l,k)``. Starting from the deepest stage, the running map is scaled up to the
next shallower stage's resolution and multiplied point-wise by its ``B_l``:

    V_L = B_L,    V_l = B_l * upsample(V_{l+1}),    map = V_1

The original uses a deconvolution with all-one kernels for the scaling; here it is bilinear, and each stage
is the last output at its spatial resolution (one per resolution, so a stage's convolutions are not
multiplied into each other). ReLU before averaging keeps stages that end without an activation (linear
bottlenecks) from flipping signs. Each product is divided by its maximum, which only changes the map's
scale (removed by normalisation) and keeps long products from underflowing.

The map does not depend on the class: every class receives the same map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def stages_by_resolution(blocks: Sequence[Tensor]) -> list[Tensor]:
    """The last output of each run of equal spatial size, in network order; 1x1 outputs dropped."""
    stages: list[Tensor] = []
    for block in blocks:
        if block.shape[-2:] == (1, 1):
            continue
        if stages and stages[-1].shape[-2:] == block.shape[-2:]:
            stages[-1] = block
        else:
            stages.append(block)
    return stages


def visual_backprop(blocks: Sequence[Tensor]) -> Tensor:
    """The VisualBackProp map ``(N, 1, h0, w0)`` at the resolution of the shallowest stage."""
    stages = stages_by_resolution(blocks)
    if not stages:
        raise ValueError("VisualBackProp needs at least one stage with spatial feature maps")
    running = torch.relu(stages[-1]).mean(dim=1, keepdim=True)
    for stage in reversed(stages[:-1]):
        average = torch.relu(stage).mean(dim=1, keepdim=True)
        running = F.interpolate(running, size=average.shape[-2:], mode="bilinear", align_corners=False)
        running = running * average
        peak = running.amax(dim=(2, 3), keepdim=True)
        running = running / torch.where(peak > 0, peak, torch.ones_like(peak))
    return running
