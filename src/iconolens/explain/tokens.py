"""Feature maps that are not ``(N, K, h, w)``: transformer tokens and channels-last maps, seen as a grid.

The CAM formulas weight K channels over an h x w grid. Convolutional networks hand over such a grid;
a vision transformer hands over tokens ``(N, L, D)`` (a class token, then one token per image patch in
row-major order) and torchvision's Swin hands over channels-last maps ``(N, h, w, D)``. The layout of a
target layer's tensor is read from its shape, the input image and the model:

- ``(N, L, D)``: tokens. When the model states its patch size (``model.patch_size``, or
  ``model.patch_embed.patch_size``), the grid is ``(H // p, W // p)`` for an ``H x W`` input and every
  token before the last ``h * w`` is a leading non-patch token (class token, distillation or register
  tokens). Otherwise the leading tokens are one class token if the other ``L - 1`` form a grid of the
  image's aspect ratio (``L - 1`` a perfect square for a square image), else none if all ``L`` do; any
  other count is refused, since which tokens are patches cannot be told.
- ``(N, a, b, c)``: channels-first ``(N, K, h, w)`` unless only ``(a, b)`` can be the spatial size, i.e.
  ``(a, b)`` fits the input image (no side longer than the image's, strides of the two sides within a
  factor 1.5 of each other) and ``(b, c)`` does not. When both or neither fit, channels-last is chosen
  only if ``c`` equals the width of the model's final linear layer and ``a`` does not.

The grid is what the saliency formulas see; the layer's own layout is rebuilt from it (a new tensor) for
the rest of the network, so predictions are unchanged. Leading tokens go on as they were, detached:
gradients are taken with respect to the patch tokens only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from iconolens.errors import BadInputError

Kind = Literal["grid", "channels_last", "tokens"]
#: Largest ratio between the strides of the two sides for a shape to count as the image's grid.
STRIDE_RATIO = 1.5


@dataclass(frozen=True)
class GridLayout:
    """How a layer's tensor maps to ``(N, K, h, w)``: as is, permuted, or tokens after ``leading`` ones."""

    kind: Kind = "grid"
    leading: int = 0
    height: int = 0
    width: int = 0

    def to_grid(self, tensor: Tensor) -> Tensor:
        """The ``(N, K, h, w)`` view of ``tensor`` (a copy unless it already is one)."""
        if self.kind == "channels_last":
            return tensor.permute(0, 3, 1, 2).contiguous()
        if self.kind == "tokens":
            patches = tensor[:, self.leading :]
            return patches.transpose(1, 2).reshape(tensor.shape[0], tensor.shape[2], self.height, self.width)
        return tensor

    def from_grid(self, grid: Tensor, original: Tensor) -> Tensor:
        """A new tensor in the layer's own layout, computed from ``grid`` (so autograd reaches it).

        The leading tokens come from ``original``, detached; a single image's are repeated when ``grid``
        holds several versions of its maps.
        """
        if self.kind == "channels_last":
            return grid.permute(0, 2, 3, 1).clone(memory_format=torch.contiguous_format)
        if self.kind == "tokens":
            patches = grid.flatten(2).transpose(1, 2)
            leading = original[:, : self.leading].detach()
            if leading.shape[0] == 1 and grid.shape[0] != 1:
                leading = leading.expand(grid.shape[0], -1, -1)
            return torch.cat([leading.to(patches.dtype), patches], dim=1)
        return grid.clone()


def patch_size_of(model: nn.Module) -> tuple[int, int] | None:
    """The patch size a vision transformer declares (torchvision or timm spelling), else None."""
    for owner in (model, getattr(model, "patch_embed", None)):
        size = getattr(owner, "patch_size", None)
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return size, size
        if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size):
            return int(size[0]), int(size[1])
    return None


def head_width_of(model: nn.Module) -> int | None:
    """Input width of the model's last linear layer (the channel count its head reads), else None."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].in_features if linears else None


def check_input_size(model: nn.Module, images: Tensor) -> None:
    """Refuse, in one sentence, an input size a fixed-size vision transformer cannot take.

    torchvision's ``VisionTransformer`` learns one position embedding per patch of its ``image_size``
    and asserts that size; this says so before the network fails mid-way.
    """
    size = getattr(model, "image_size", None)
    if not isinstance(size, int) or isinstance(size, bool) or patch_size_of(model) is None:
        return
    height, width = images.shape[-2:]
    if (height, width) != (size, size):
        raise BadInputError(
            f"this vision transformer takes images of exactly {size} x {size} pixels (its position "
            f"embeddings are learnt for that size), not {height} x {width}; explain at its own input size"
        )


def fits_image(height: int, width: int, image: tuple[int, int]) -> bool:
    """Whether ``height x width`` can be a feature grid of an image of size ``image`` (H, W)."""
    if height < 1 or width < 1 or height > image[0] or width > image[1]:
        return False
    strides = image[0] / height, image[1] / width
    return max(strides) <= STRIDE_RATIO * min(strides)


def _grid_of(count: int, image: tuple[int, int]) -> tuple[int, int] | None:
    """``(h, w)`` with ``h * w == count`` and the image's aspect ratio, if there is one."""
    if count < 1:
        return None
    estimate = math.sqrt(count * image[0] / image[1])
    for height in sorted({max(1, math.floor(estimate)), max(1, math.ceil(estimate))}):
        width, remainder = divmod(count, height)
        if remainder == 0 and fits_image(height, width, image):
            return height, width
    return None


def token_layout(
    shape: tuple[int, ...], image: tuple[int, int], patch_size: tuple[int, int] | None, where: str
) -> GridLayout:
    """The layout of tokens shaped ``(N, L, D)``, by the rule in the module's description."""
    count = shape[1]
    if patch_size is not None:
        height, width = image[0] // patch_size[0], image[1] // patch_size[1]
        leading = count - height * width
        if height >= 1 and width >= 1 and leading >= 0:
            return GridLayout("tokens", leading, height, width)
        raise BadInputError(
            f"layer {where!r} gives {count} tokens, fewer than the {height} x {width} patches of "
            f"{patch_size[0]} x {patch_size[1]} pixels in a {image[0]} x {image[1]} image; name a layer "
            "that carries one token per patch"
        )
    for leading in (1, 0):
        grid = _grid_of(count - leading, image)
        if grid is not None:
            return GridLayout("tokens", leading, *grid)
    raise BadInputError(
        f"layer {where!r} gives {count} tokens, which do not form a grid of the image's patches with or "
        "without one class token, and the model does not state its patch_size; name a layer with a patch "
        "grid, or give the model a patch_size attribute"
    )


def map_layout(shape: tuple[int, ...], image: tuple[int, int], head_width: int | None) -> GridLayout:
    """Channels-first or channels-last for a 4-D shape, by the rule in the module's description."""
    _, a, b, c = shape
    first, last = fits_image(b, c, image), fits_image(a, b, image)
    if first != last:
        return GridLayout("channels_last" if last else "grid")
    if head_width is not None and c == head_width and a != head_width:
        return GridLayout("channels_last")
    return GridLayout("grid")


def layout_of(
    tensor: object,
    image: tuple[int, int],
    *,
    head_width: int | None,
    patch_size: tuple[int, int] | None,
    where: str,
) -> GridLayout:
    """The layout of a target layer's tensor, or a sentence saying why it holds no feature grid."""
    if isinstance(tensor, Tensor) and tensor.ndim == 4:
        return map_layout(tuple(tensor.shape), image, head_width)
    if isinstance(tensor, Tensor) and tensor.ndim == 3:
        return token_layout(tuple(tensor.shape), image, patch_size, where)
    shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
    raise BadInputError(
        f"layer {where!r} gives {shape}, not feature maps shaped (N, K, h, w), (N, h, w, K) or tokens "
        "(N, L, K); name a convolutional or transformer layer with target_layer"
    )
