"""Checking every image of a collection while listing it: header reads by default, full decodes on request.

A reader calls ``read_headers`` once for all its images, so one progress bar covers the scan and every
unusable file becomes a ``Problem`` instead of an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from iconolens.data.images import DEFAULT_MAX_PIXELS, ImageHeader, load_image, probe_image
from iconolens.data.records import Problem
from iconolens.errors import BadImageError
from iconolens.progress import progress


def read_header(
    path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, decode: bool = False
) -> ImageHeader | Problem:
    """The image's header, or the Problem that makes it unusable.

    With ``decode`` the pixels are decoded too, which also finds damage inside the image data.
    """
    try:
        header = probe_image(path, max_pixels=max_pixels)
        if decode:
            image = load_image(path, max_pixels=max_pixels)
            header = ImageHeader(image.width, image.height, header.format, header.mode)
        return header
    except BadImageError as exc:
        return Problem(path=str(path), message=exc.problem)


def read_headers(
    paths: Sequence[Path], max_pixels: int | None = DEFAULT_MAX_PIXELS, decode: bool = False
) -> list[ImageHeader | Problem]:
    """``read_header`` for each path, in order, with a progress bar on a terminal."""
    verb = "Decoding" if decode else "Reading image headers"
    return [
        read_header(path, max_pixels=max_pixels, decode=decode)
        for path in progress(paths, verb, total=len(paths))
    ]
