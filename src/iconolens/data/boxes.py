"""Checking a box against its image: inside the picture and with a positive area.

Annotation tools often round a box edge a fraction of a pixel past the border; such boxes are clipped
rather than refused. Anything further out, or with no area, is an annotation error.
"""

from __future__ import annotations

from dataclasses import replace

from iconolens.data.records import Box

# How far (in pixels) a box edge may lie outside the image before it counts as an error.
BORDER_TOLERANCE = 1.0


def box_problem(box: Box, width: int, height: int, tolerance: float = BORDER_TOLERANCE) -> str | None:
    """A sentence fragment saying what is wrong with ``box`` in a ``width`` x ``height`` image, or None."""
    where = f"box {box.label!r} ({box.x0:g}, {box.y0:g}, {box.x1:g}, {box.y1:g})"
    if not box.x1 > box.x0 or not box.y1 > box.y0:
        return f"{where} has zero area"
    if (
        box.x0 < -tolerance
        or box.y0 < -tolerance
        or box.x1 > width + tolerance
        or box.y1 > height + tolerance
    ):
        return f"{where} lies outside the {width}x{height} image"
    return None


def clip_box(box: Box, width: int, height: int) -> Box:
    """``box`` with its edges moved inside ``[0, width] x [0, height]``."""
    return replace(
        box,
        x0=min(max(box.x0, 0.0), float(width)),
        y0=min(max(box.y0, 0.0), float(height)),
        x1=min(max(box.x1, 0.0), float(width)),
        y1=min(max(box.y1, 0.0), float(height)),
    )


def checked_boxes(boxes: list[Box], width: int, height: int) -> tuple[tuple[Box, ...], str | None]:
    """The boxes clipped to the image, or the first problem found among them."""
    for box in boxes:
        problem = box_problem(box, width, height)
        if problem is not None:
            return (), problem
    clipped = tuple(clip_box(b, width, height) for b in boxes)
    for box in clipped:
        if box.area <= 0:
            return (), f"box {box.label!r} has zero area inside the {width}x{height} image"
    return clipped, None
