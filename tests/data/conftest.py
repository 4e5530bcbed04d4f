"""Fixtures for the data layer: small images and collections written by the tests themselves."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _write(path: Path, pixels: np.ndarray | Image.Image, fmt: str | None = None, **save: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    image.save(path, format=fmt, **save)
    return path


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """``write_image(path, pixels_or_image, fmt=None, **save_options)`` -> path."""
    return _write


@pytest.fixture
def solid_image() -> Callable[..., Path]:
    """``solid_image(path, width, height, colour=(120, 60, 30))``: a flat RGB image file."""

    def make(path: Path, width: int, height: int, colour: tuple[int, int, int] = (120, 60, 30)) -> Path:
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
        pixels[:] = colour
        return _write(path, pixels)

    return make


@pytest.fixture
def jpeg_bytes() -> Callable[[int, int], bytes]:
    """``jpeg_bytes(width, height)``: a noisy JPEG (noise keeps the compressed data long)."""

    def make(width: int, height: int) -> bytes:
        pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()

    return make
