"""RoIAlign as matrix products, so that training a detector on a CPU does not wait on RoIAlign's backward pass.

torchvision's CPU RoIAlign computes its gradient with a scalar loop on one thread; on the built-in detector it
took about a third of every training iteration. RoIAlign (``aligned=False``, fixed sampling ratio) is linear in the
feature map and its sampling weights separate into a row factor and a column factor, so for each image the pooled
features are ``M @ F`` with ``M[(roi, py, px), (y, x)] = Ay[roi, py, y] * Ax[roi, px, x]``: one matrix product
forward and one backward, on all cores. The weights reproduce torchvision's bilinear sampling exactly (samples
more than one cell outside the map count as zero, others are clamped to the border; a RoI is at least one cell
wide; each bin averages ``ratio x ratio`` samples), and RoIs are assigned to pyramid levels as
:class:`torchvision.ops.MultiScaleRoIAlign` does, so the module is a drop-in replacement for it. Without
gradients (inference, D-RISE) torchvision's own forward runs, which is as fast and never builds the matrix.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign


def axis_weights(start: Tensor, length: Tensor, size: int, bins: int, ratio: int) -> Tensor:
    """(K, bins, size): how much each of ``size`` cells contributes to each bin along one axis.

    ``start``/``length``: (K,) RoI extents in cells along the axis; ``length`` is already at least 1.
    """
    steps = (torch.arange(bins * ratio, dtype=start.dtype, device=start.device) + 0.5) / ratio
    position = start[:, None] + steps[None, :] * (length[:, None] / bins)
    inside = ((position >= -1.0) & (position <= size)).to(start.dtype)
    position = position.clamp(min=0.0)
    low = position.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, size - 1, low + 1)
    fraction = torch.where(at_edge, torch.zeros_like(position), position - low.to(start.dtype))
    weights = start.new_zeros(start.shape[0], bins * ratio, size)
    weights.scatter_add_(2, low[..., None], ((1.0 - fraction) * inside)[..., None])
    weights.scatter_add_(2, high[..., None], (fraction * inside)[..., None])
    return weights.view(start.shape[0], bins, ratio, size).mean(2)


def roi_align_one_image(features: Tensor, boxes: Tensor, scale: float, output_size: int, ratio: int) -> Tensor:
    """(K, C, P, P) RoIAlign of one image's (C, H, W) ``features`` over (K, 4) image-pixel ``boxes``."""
    channels, height, width = features.shape
    x0, y0, x1, y1 = (boxes * scale).unbind(1)
    rows = axis_weights(y0, (y1 - y0).clamp(min=1.0), height, output_size, ratio)
    cols = axis_weights(x0, (x1 - x0).clamp(min=1.0), width, output_size, ratio)
    sampling = (rows[:, :, None, :, None] * cols[:, None, :, None, :]).reshape(-1, height * width)
    pooled = sampling @ features.reshape(channels, height * width).t()
    return pooled.view(boxes.shape[0], output_size, output_size, channels).permute(0, 3, 1, 2)


class MatrixRoIAlign(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` (same levels and values) computed by :func:`roi_align_one_image`."""

    def __init__(self, featmap_names: list[str], output_size: int = 7, sampling_ratio: int = 2,
                 canonical_scale: int = 224, canonical_level: int = 4) -> None:
        if sampling_ratio < 1:
            raise ValueError("MatrixRoIAlign needs a fixed sampling ratio of at least 1")
        super().__init__(featmap_names, output_size, sampling_ratio,
                         canonical_scale=canonical_scale, canonical_level=canonical_level)
        self.pooled_size = output_size

    def levels(self, boxes: Tensor, scales: list[float]) -> Tensor:
        """The pyramid level (index into ``scales``) of each box, by the FPN paper's area rule."""
        if len(scales) == 1:
            return torch.zeros(boxes.shape[0], dtype=torch.long, device=boxes.device)
        low, high = -math.log2(scales[0]), -math.log2(scales[-1])
        side = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        level = torch.floor(self.canonical_level + torch.log2(side / self.canonical_scale) + 1e-6)
        return (level.clamp(min=low, max=high) - low).long()

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        if not torch.is_grad_enabled():  # inference: torchvision's forward is as fast and needs no large matrix
            return super().forward(x, boxes, image_shapes)
        features = [x[name] for name in self.featmap_names if name in x]
        tallest = max(shape[0] for shape in image_shapes)  # torchvision infers each level's stride from heights
        scales = [2.0 ** round(math.log2(f.shape[-2] / tallest)) for f in features]
        channels = features[0].shape[1]
        size = self.pooled_size
        parts, order = [], []
        offset = 0
        for image, image_boxes in enumerate(boxes):
            level_of = self.levels(image_boxes, scales)
            for level, feature in enumerate(features):
                chosen = torch.nonzero(level_of == level).flatten()
                if chosen.numel():
                    parts.append(roi_align_one_image(feature[image], image_boxes[chosen], scales[level], size,
                                                     self.sampling_ratio))
                    order.append(chosen + offset)
            offset += image_boxes.shape[0]
        if not parts:
            return features[0].new_zeros(0, channels, size, size)
        pooled = torch.cat(parts)
        result = torch.empty_like(pooled)
        return result.index_copy(0, torch.cat(order), pooled)
