"""Loading an image the way every stage expects it: RGB, upright, and safe to decode.

EXIF orientation is applied (photographs of paintings are often stored rotated); palette, grey, alpha,
CMYK and 16-bit images become 8-bit RGB; images over a pixel limit are refused rather than decoded,
since a decompression bomb can exhaust memory.

Listing a collection must not decode every painting, so ``probe_image`` reads only the header (size,
orientation) plus the last bytes of the file, where JPEG, PNG and GIF carry an end marker that a
truncated file lacks (a file without it is decoded to tell truncation from data appended after the
marker). Other damage inside the pixel data is only found by decoding (``load_image``).
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from iconolens.errors import BadImageError

DEFAULT_MAX_PIXELS = 100_000_000

# EXIF orientations 5..8 turn the stored image by a quarter turn, so width and height swap.
_QUARTER_TURN_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112
# How far from the end of the file the format's end marker may sit (some writers pad the file).
_TAIL_BYTES = 1024
_END_MARKERS = {"JPEG": b"\xff\xd9", "MPO": b"\xff\xd9", "PNG": b"IEND", "GIF": b"\x3b"}

_pil_limit_lock = threading.Lock()


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says about an image, as it will look once loaded (upright)."""

    width: int
    height: int
    format: str
    mode: str


@contextmanager
def _pil_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Let our own limit govern: Pillow's built-in bomb check would otherwise refuse or warn first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pil_limit = Image.MAX_IMAGE_PIXELS
        if pil_limit is not None and (max_pixels is None or max_pixels >= 2 * pil_limit):
            with _pil_pixel_limit_lifted():
                yield
        else:
            yield


@contextmanager
def _pil_pixel_limit_lifted() -> Iterator[None]:
    with _pil_limit_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        data = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or data.max() > 255 else 255.0
        grey = np.clip(np.rint(data / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "F":
        data = np.asarray(image, dtype=np.float64)
        lo, hi = float(data.min()), float(data.max())
        scaled = np.zeros_like(data) if hi <= lo else (data - lo) / (hi - lo) * 255.0
        return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise BadImageError("image file does not exist", path)
    if path.is_dir():
        raise BadImageError("expected an image file, found a folder", path)
    if path.stat().st_size == 0:
        raise BadImageError("image file is empty", path)


def _over_limit(path: Path, size: str, max_pixels: int | None) -> BadImageError:
    limit = f"the limit of {max_pixels:,}" if max_pixels is not None else "Pillow's safety limit"
    return BadImageError(
        f"image has {size} pixels, over {limit} (raise it with --max-pixels if the file is trusted)", path
    )


def _check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise _over_limit(path, f"{width}x{height} = {width * height:,}", max_pixels)


def _bomb_error(path: Path, exc: Exception, max_pixels: int | None) -> BadImageError:
    """Pillow refused the header itself (over twice its own limit, which is below ours)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)):,}" if found else "too many"
    return _over_limit(path, size, max_pixels)


@contextmanager
def _decoding_errors(path: Path, max_pixels: int | None, corrupt: str) -> Iterator[None]:
    """Turn Pillow's many ways of failing into one BadImageError sentence naming ``path``."""
    try:
        with _pil_pixel_limit(max_pixels):
            yield
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise _bomb_error(path, exc, max_pixels) from None
    except UnidentifiedImageError:
        raise BadImageError("not an image file, or a format that cannot be read", path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"{corrupt} ({exc})", path) from None


def _ends_with_marker(path: Path, image_format: str | None) -> bool:
    marker = _END_MARKERS.get(image_format or "")
    if marker is None:
        return True
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    return marker in tail if len(marker) > 1 else tail.rstrip(b"\x00").endswith(marker)


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation tag, read without decoding pixels.

    Pillow's PNG ``getexif`` decodes the whole image when the EXIF chunk is not among the header chunks,
    so for PNG only an EXIF chunk placed before the pixel data (where writers put it) is honoured.
    """
    try:
        if image.format == "PNG":
            raw = image.info.get("exif")
            if not raw:
                return None
            exif = Image.Exif()
            exif.load(raw)
            return exif.get(_EXIF_ORIENTATION)
        return image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a damaged EXIF block does not stop the image from loading
        return None


def probe_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Size (after EXIF orientation), format and mode from the header, without decoding pixels.

    Raises BadImageError for a missing, empty, non-image, over-limit or visibly truncated file.
    """
    path = Path(path)
    _check_file(path)
    with _decoding_errors(path, max_pixels, "image header is corrupt"), Image.open(path) as image:
        width, height = image.size
        image_format = image.format or ""
        mode = image.mode
        _check_pixels(path, width, height, max_pixels)
        orientation = _orientation(image)
    if not _ends_with_marker(path, image_format):
        # Some writers append data after the end marker; only a decode tells that from truncation.
        try:
            load_image(path, max_pixels=max_pixels)
        except BadImageError as exc:
            raise BadImageError(
                f"image is truncated (the {image_format} end marker is missing and decoding fails)", path
            ) from exc
    if orientation in _QUARTER_TURN_ORIENTATIONS:
        width, height = height, width
    return ImageHeader(width=width, height=height, format=image_format, mode=mode)


def image_size(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header without decoding pixels."""
    header = probe_image(path, max_pixels=max_pixels)
    return header.width, header.height


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``path`` into an upright 8-bit RGB image, or raise BadImageError naming the problem."""
    path = Path(path)
    _check_file(path)
    with _decoding_errors(path, max_pixels, "image is truncated or corrupt"), Image.open(path) as image:
        width, height = image.size
        _check_pixels(path, width, height, max_pixels)
        image.load()
        upright = ImageOps.exif_transpose(image)
        return _to_rgb(upright)
