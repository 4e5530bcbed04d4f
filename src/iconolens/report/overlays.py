"""A saliency map laid over its painting, with expert boxes in red and boxes derived from the map in green.

The heat map is coloured with a matplotlib colour map and blended with the picture at ``alpha``; boxes are
drawn on top so they stay readable over hot regions. Large paintings are shrunk to ``max_side`` pixels
first, and the boxes (given in the original image's pixels) are scaled with them. ``heatmap_layer`` gives the
heat alone as a transparent picture, for viewers (IIIF) that lay it over the painting themselves.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from iconolens.atomic import write_bytes_atomically
from iconolens.data.records import Box

TRUTH_COLOUR = (255, 0, 0)
DERIVED_COLOUR = (0, 255, 0)


def display_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(width, height)`` shrunk so neither side exceeds ``max_side`` (never enlarged)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize_heat(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a ``(h, w)`` map to ``size = (width, height)``, values kept in [0, 1]."""
    width, height = size
    tensor = torch.as_tensor(np.asarray(heat, dtype=np.float32))[None, None]
    if tensor.shape[-2:] != (height, width):
        tensor = F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)
    return tensor[0, 0].clamp(0, 1).numpy()


def _draw_boxes(draw: ImageDraw.ImageDraw, boxes: Iterable[Box], scale_x: float, scale_y: float, colour, width: int) -> None:
    for box in boxes:
        x0, y0 = box.x0 * scale_x, box.y0 * scale_y
        # Half-open boxes: the last covered pixel is x1 - 1.
        x1, y1 = max(x0, box.x1 * scale_x - 1), max(y0, box.y1 * scale_y - 1)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)


def heatmap_overlay(
    image: Image.Image,
    heat: np.ndarray,
    *,
    truth_boxes: Iterable[Box] = (),
    derived_boxes: Iterable[Box] = (),
    alpha: float = 0.5,
    colormap: str = "jet",
    max_side: int | None = 1024,
) -> Image.Image:
    """The painting blended with ``heat`` (a map in [0, 1] of any resolution) and the boxes drawn on it."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    picture = image.convert("RGB")
    size = display_size(*picture.size, max_side)
    scale_x, scale_y = size[0] / picture.width, size[1] / picture.height
    if size != picture.size:
        picture = picture.resize(size, Image.BILINEAR)
    colours = matplotlib.colormaps[colormap](_resize_heat(heat, size))[..., :3] * 255.0
    blended = (1.0 - alpha) * np.asarray(picture, dtype=np.float64) + alpha * colours
    result = Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(result)
    line = max(2, round(max(size) / 300))
    _draw_boxes(draw, truth_boxes, scale_x, scale_y, TRUTH_COLOUR, line)
    _draw_boxes(draw, derived_boxes, scale_x, scale_y, DERIVED_COLOUR, line)
    return result


def heatmap_layer(heat: np.ndarray, size: tuple[int, int], *, max_alpha: float = 0.6,
                  colormap: str = "jet") -> Image.Image:
    """``heat`` (a map in [0, 1] of any resolution) as an RGBA picture of ``size`` = (width, height) to lay over
    the painting elsewhere (a IIIF viewer): coloured with ``colormap``, opacity ``max_alpha * heat``, so cold
    regions leave the painting visible."""
    if not 0 <= max_alpha <= 1:
        raise ValueError(f"max_alpha must be in [0, 1]; got {max_alpha}")
    values = _resize_heat(heat, size)
    colours = matplotlib.colormaps[colormap](values)[..., :3] * 255.0
    alpha = max_alpha * 255.0 * values
    pixels = np.concatenate([colours, alpha[..., None]], axis=-1)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGBA")


def write_png(path: str | Path, image: Image.Image) -> Path:
    """Save ``image`` as PNG, atomically."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_bytes_atomically(path, buffer.getvalue())
