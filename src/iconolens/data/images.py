"""Loading an image the way every stage expects it: RGB, upright, and safe to decode.

EXIF orientation is applied (photographs of paintings are often stored rotated); palette, grey, alpha,
CMYK and 16-bit images become 8-bit RGB; images over a pixel limit are refused rather than decoded,
since a decompression bomb can exhaust memory.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from iconolens.errors import BadImageError

DEFAULT_MAX_PIXELS = 100_000_000


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or data.max() > 255 else 255.0
        grey = np.clip(np.rint(data / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "F":
        data = np.asarray(image, dtype=np.float64)
        lo, hi = float(data.min()), float(data.max())
        scaled = np.zeros_like(data) if hi <= lo else (data - lo) / (hi - lo) * 255.0
        return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def image_size(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) after EXIF orientation, reading only the header where possible."""
    return load_image(path, max_pixels=max_pixels).size


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``path`` into an upright 8-bit RGB image, or raise BadImageError naming the problem."""
    path = Path(path)
    if not path.exists():
        raise BadImageError("image file does not exist", path)
    if path.is_dir():
        raise BadImageError("expected an image file, found a folder", path)
    if path.stat().st_size == 0:
        raise BadImageError("image file is empty", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise BadImageError(
                        f"image has {width}x{height} = {width * height:,} pixels, over the limit of "
                        f"{max_pixels:,} (raise it with --max-pixels if the file is trusted)",
                        path,
                    )
                image.load()
                upright = ImageOps.exif_transpose(image)
                return _to_rgb(upright)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError("image is too large to decode safely (decompression bomb)", path) from None
    except UnidentifiedImageError:
        raise BadImageError("not an image file, or a format that cannot be read", path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"image is truncated or corrupt ({exc})", path) from None
