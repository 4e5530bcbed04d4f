"""A face's figure cut out of the painting: GrabCut seeded by the face, inside a window the canon allows.

The canon's proportions give every face the same figure: 7.5 heads of a standing body. Painted people sit,
kneel, lean and are cut by the frame or by each other, so the canon's box is the right size for some and
wrong for many. The painting itself knows where a figure ends: GrabCut (Rother et al., 2004) fits colour
models of the figure and its surroundings and cuts along the edges between them. Seeds, in the face's units:

* certainly figure: the face box, and a face-sized block just below it (the neck and the chest);
* probably figure: the canon's figure box;
* probably background: the rest of a window twice the canon's width and about a third taller, centred on the
  face (room for arms, drapery, a kneeling or reclining body);
* certainly background: the other faces of the painting (another face is another person), and everything
  outside the window.

The figure's box is the box of the connected figure region that holds the face's centre; where GrabCut finds
no background in the window (a crowd, or a blank canvas) that is the whole window. Keeping the canon's box
there instead was measured worse on People-Art (mAP@0.5 0.198 against 0.211). Where GrabCut cannot run (a
window too small) or leaves the face's centre outside the figure, the canon's box is kept. The window
is cut at most ``max_side`` pixels on its longer side: GrabCut's cost grows with pixels and a box needs no fine
outline. Nothing here was fitted to any collection's boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from iconolens.errors import BadInputError

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class FigureCut:
    """The window around a face (in face widths and heads) and GrabCut's effort."""

    window_width: float = 6.0  # face widths, centred on the face: twice the canon's figure width
    window_above: float = 0.3  # heads above the top of the head
    window_below: float = 9.5  # heads below the top of the head (the canon's figure is 7.5)
    iterations: int = 3
    max_side: int = 200

    def __post_init__(self) -> None:
        if min(self.window_width, self.window_below) <= 0 or self.window_above < 0:
            raise BadInputError("a figure's window needs a positive width and height below the head")
        if self.iterations < 1 or self.max_side < 16:
            raise BadInputError("GrabCut needs at least one iteration and max_side >= 16")


def cut_figure(image: Image.Image, face: Box, canon: Box, other_faces: Sequence[Box] = (),
               head_height: float = 4 / 3, cut: FigureCut = FigureCut()) -> Box:
    """The box of the figure whose face is ``face`` in ``image`` (all boxes ``(x0, y0, x1, y1)`` in its pixels).

    ``canon`` is the face's figure by the canon's proportions (probably figure, and the answer when the cut
    fails); ``head_height`` the head's height over the face box's, as in the canon.
    """
    width, height = image.size
    x0, y0, x1, y1 = face
    face_w, face_h = x1 - x0, y1 - y0
    head = head_height * face_h
    top, centre = y1 - head, (x0 + x1) / 2
    left = int(max(0.0, centre - cut.window_width * face_w / 2))
    right = int(np.ceil(min(float(width), centre + cut.window_width * face_w / 2)))
    upper = int(max(0.0, top - cut.window_above * head))
    lower = int(np.ceil(min(float(height), top + cut.window_below * head)))
    if right - left < 4 or lower - upper < 4:
        return canon
    window = image.crop((left, upper, right, lower)).convert("RGB")
    scale = min(1.0, cut.max_side / max(window.size))
    size = (max(4, round(window.size[0] * scale)), max(4, round(window.size[1] * scale)))
    pixels = np.ascontiguousarray(np.asarray(window.resize(size, Image.Resampling.BILINEAR))[:, :, ::-1])

    def cells(box: Box) -> tuple[slice, slice]:
        bx0, by0, bx1, by1 = ((v - o) * scale for v, o in zip(box, (left, upper, left, upper)))
        return (slice(max(0, int(round(by0))), max(0, int(round(by1)))),
                slice(max(0, int(round(bx0))), max(0, int(round(bx1)))))

    mask = np.full((size[1], size[0]), cv2.GC_PR_BGD, np.uint8)
    mask[cells(canon)] = cv2.GC_PR_FGD
    for other in other_faces:
        mask[cells(other)] = cv2.GC_BGD
    mask[cells((centre - face_w / 2, y1, centre + face_w / 2, y1 + face_h))] = cv2.GC_FGD  # neck and chest
    mask[cells(face)] = cv2.GC_FGD
    if not (mask == cv2.GC_FGD).any() or (mask == cv2.GC_FGD).all():
        return canon
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models by k-means from OpenCV's global generator
    try:
        cv2.grabCut(pixels, mask, None, background, foreground, cut.iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # e.g. too few pixels of one kind for its colour models
        return canon
    figure = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(figure, connectivity=8)
    rows, columns = cells(face)
    row = min(size[1] - 1, (rows.start + max(rows.start, rows.stop - 1)) // 2)
    column = min(size[0] - 1, (columns.start + max(columns.start, columns.stop - 1)) // 2)
    region = labels[row, column]
    if region == 0:
        return canon
    x, y, w, h = (int(v) for v in stats[region, :4])
    return (max(0.0, left + x / scale), max(0.0, upper + y / scale),
            min(float(width), left + (x + w) / scale), min(float(height), upper + (y + h) / scale))
