"""A face's figure cut out of a painting: the painted body's extent, not the canon's, and the canon's fallbacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from iconolens.data.records import Dataset, Sample
from iconolens.detect.face_figures import FigureProportions, face_figure_boxes
from iconolens.detect.figure_cut import FigureCut, cut_figure

FACE = (135.0, 50.0, 165.0, 80.0)  # 30 x 30: head 40 tall from y 40, canon figure 300 tall, 90 wide


def _seated_figure(robe: tuple[int, int, int, int] = (110, 80, 190, 200)) -> Image.Image:
    """A bluish ground, a red robe (x0, y0, x1, y1) and a skin-coloured face at FACE, with painterly noise."""
    rng = np.random.default_rng(0)
    pixels = rng.normal([60, 60, 120], 8, (300, 300, 3))
    x0, y0, x1, y1 = robe
    pixels[y0:y1, x0:x1] = rng.normal([180, 40, 40], 8, (y1 - y0, x1 - x0, 3))
    pixels[50:80, 135:165] = rng.normal([220, 180, 150], 8, (30, 30, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _close(box, expected, tolerance: float) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(box, expected))


def test_a_seated_figure_is_cut_to_its_body_where_the_canon_stands_it_to_the_frame() -> None:
    canon = FigureProportions().figure_box(FACE, 300, 300)
    assert canon == (105.0, 40.0, 195.0, 300.0)
    # The window is cut at 200 px (scale 2/3), so edges land within 1.5 px of the painted ones.
    assert _close(cut_figure(_seated_figure(), FACE, canon), (110, 50, 190, 200), 1.5)


def test_outstretched_arms_widen_the_box_beyond_the_canon_but_not_beyond_the_window() -> None:
    canon = FigureProportions().figure_box(FACE, 300, 300)
    wide = cut_figure(_seated_figure((60, 80, 240, 200)), FACE, canon)
    assert _close(wide, (60, 50, 240, 200), 1.5)  # 180 wide: the window allows six face widths (180)
    wider = cut_figure(_seated_figure((20, 80, 280, 200)), FACE, canon)
    assert _close((wider[0], wider[2]), (60, 240), 1.5)  # clipped to the window, x 150 +- 90


def test_a_blank_canvas_fills_the_window_and_a_tiny_window_keeps_the_canons_box() -> None:
    canon = FigureProportions().figure_box(FACE, 300, 300)
    blank = Image.fromarray(np.full((300, 300, 3), 128, np.uint8))
    # Nothing to cut along: the figure is the window, x 150 +- 3 face widths, y from 0.3 heads above the head.
    assert _close(cut_figure(blank, FACE, canon), (60, 28, 240, 300), 1.5)
    tiny = (10.0, 10.0, 10.5, 10.5)
    assert cut_figure(_seated_figure(), tiny, (9.0, 9.0, 12.0, 20.0)) == (9.0, 9.0, 12.0, 20.0)


def test_another_face_is_background_so_it_does_not_join_its_body_to_this_figure() -> None:
    # Within the canon's box, a neighbour's face touches this narrow robe's right edge and the neighbour's red
    # robe touches that face. Skin like this face and red like this robe, the neighbour joins the figure through
    # the face; told that the face is someone else's, the figure ends at its own robe.
    image = np.asarray(_seated_figure((110, 80, 165, 200)), dtype=np.float64).copy()
    rng = np.random.default_rng(1)
    image[100:115, 165:180] = rng.normal([220, 180, 150], 8, (15, 15, 3))
    image[90:200, 180:195] = rng.normal([180, 40, 40], 8, (110, 15, 3))
    painting = Image.fromarray(image.clip(0, 255).astype(np.uint8))
    canon = FigureProportions().figure_box(FACE, 300, 300)
    assert cut_figure(painting, FACE, canon)[2] >= 193
    assert _close(cut_figure(painting, FACE, canon, [(165.0, 100.0, 180.0, 115.0)]), (110, 50, 165, 200), 1.5)


def test_face_figure_boxes_cut_each_figure_in_the_original_pixels(tmp_path: Path) -> None:
    # The painting at twice the size: faces are found on the 300-px copy and boxes come back at 600 px.
    path = tmp_path / "seated.png"
    _seated_figure().resize((600, 600), Image.Resampling.NEAREST).save(path)
    dataset = Dataset((Sample("seated", path, ("person",)),), ("person",))
    derived = face_figure_boxes(dataset, faces=lambda pixels: [(*FACE, 0.99)], max_side=300)
    assert _close(derived.boxes[0].xyxy, (220, 100, 380, 400), 3.0)
    canon = face_figure_boxes(dataset, faces=lambda pixels: [(*FACE, 0.99)], max_side=300, cut=None)
    assert canon.boxes[0].xyxy == FigureProportions().figure_box(tuple(2 * v for v in FACE), 600, 600)


def test_a_cut_needs_a_window_and_an_iteration() -> None:
    import pytest

    from iconolens.errors import BadInputError

    with pytest.raises(BadInputError):
        FigureCut(window_width=0)
    with pytest.raises(BadInputError):
        FigureCut(iterations=0)
