"""Iconographic attribute glyphs: the symbols that identify a saint in the synthetic collection.

Each glyph is designed once in a unit square (x to the right, y downwards, centre at (0.5, 0.5)) and
drawn by a :class:`GlyphPen`, which rotates and scales the design onto a small pixel patch. A glyph has
two layers: its *silhouette* (painted in a light fill colour and given a dark outline by the painter) and
its *ink* (dark inner details: eye sockets, page lines, jewels). Light body plus dark outline keeps every
glyph readable on any background and in any palette, so the colours of a glyph never tell which it is;
only its shape does.

The designs keep their content inside the unit square, so a glyph of ``size`` pixels rotated by at most
15 degrees stays within ``0.62 * size`` of its centre: the scene planner relies on that bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

Point = tuple[float, float]

#: How far (in glyph sizes) a glyph rotated by up to MAX_GLYPH_ANGLE can reach from its centre.
GLYPH_REACH = 0.62
#: The largest rotation (degrees) the planner may give a glyph while keeping GLYPH_REACH valid.
MAX_GLYPH_ANGLE = 15.0


@dataclass(frozen=True)
class GlyphMasks:
    """A drawn glyph: boolean silhouette and ink layers on a square patch centred on the glyph."""

    fill: np.ndarray
    ink: np.ndarray

    @property
    def side(self) -> int:
        return int(self.fill.shape[0])


def _rotate(points: Sequence[Point], degrees: float, centre: Point = (0.5, 0.5)) -> list[Point]:
    """Rotate unit-square points about ``centre`` (used to build crossed keys, fanned arrows...)."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    cx, cy = centre
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def _ellipse_points(cx: float, cy: float, rx: float, ry: float, n: int = 28) -> list[Point]:
    return [
        (cx + rx * math.cos(2 * math.pi * k / n), cy + ry * math.sin(2 * math.pi * k / n))
        for k in range(n)
    ]


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[Point]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


class GlyphPen:
    """Draws a unit-square design, scaled to ``size`` pixels and rotated by ``angle`` degrees.

    Drawing happens on a square patch large enough for any rotation; ``masks()`` returns both layers.
    """

    def __init__(self, size: float, angle: float) -> None:
        self.size = float(size)
        self.side = int(math.ceil(self.size * math.sqrt(2.0))) + 4
        a = math.radians(angle)
        self._cos, self._sin = math.cos(a), math.sin(a)
        self._fill = Image.new("L", (self.side, self.side), 0)
        self._ink = Image.new("L", (self.side, self.side), 0)
        self._draw = {False: ImageDraw.Draw(self._fill), True: ImageDraw.Draw(self._ink)}

    def _map(self, points: Sequence[Point]) -> list[Point]:
        half = self.side / 2.0
        out = []
        for u, v in points:
            x, y = (u - 0.5) * self.size, (v - 0.5) * self.size
            out.append((half + x * self._cos - y * self._sin, half + x * self._sin + y * self._cos))
        return out

    def _width(self, width: float) -> int:
        return max(2, int(round(width * self.size)))

    def polygon(self, points: Sequence[Point], ink: bool = False) -> None:
        self._draw[ink].polygon(self._map(points), fill=255)

    def ellipse(
        self, cx: float, cy: float, rx: float, ry: float, ink: bool = False, tilt: float = 0.0
    ) -> None:
        """A filled ellipse (``tilt`` degrees about its own centre), drawn as a polygon so it rotates."""
        pts = _ellipse_points(cx, cy, rx, ry)
        if tilt:
            pts = _rotate(pts, tilt, (cx, cy))
        self.polygon(pts, ink)

    def stroke(self, points: Sequence[Point], width: float, ink: bool = False) -> None:
        """A thick polyline with round joints and caps; ``width`` is in glyph units."""
        w = self._width(width)
        mapped = self._map(points)
        draw = self._draw[ink]
        draw.line(mapped, fill=255, width=w, joint="curve")
        r = w / 2.0
        for x, y in (mapped[0], mapped[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)

    def ring(self, cx: float, cy: float, r: float, width: float, ink: bool = False) -> None:
        pts = _ellipse_points(cx, cy, r, r, n=32)
        self.stroke(pts + pts[:2], width, ink)

    def masks(self) -> GlyphMasks:
        fill = np.asarray(self._fill) > 0
        ink = np.asarray(self._ink) > 0
        return GlyphMasks(fill=fill, ink=ink)


# --- the designs ---------------------------------------------------------------------------------


def _key(pen: GlyphPen, degrees: float) -> None:
    bow = _rotate([(0.5, 0.2)], degrees)[0]
    pen.ring(bow[0], bow[1], 0.1, 0.07)
    pen.stroke(_rotate([(0.5, 0.3), (0.5, 0.92)], degrees), 0.075)
    pen.polygon(_rotate(_rect(0.5, 0.74, 0.67, 0.8), degrees))
    pen.polygon(_rotate(_rect(0.5, 0.84, 0.64, 0.9), degrees))


def draw_keys(pen: GlyphPen) -> None:
    """Two crossed keys (Peter's keys of heaven)."""
    _key(pen, -32.0)
    _key(pen, 32.0)


def draw_sword(pen: GlyphPen) -> None:
    """An upright sword: pommel, grip, crossguard and a long pointed blade."""
    pen.polygon([(0.44, 0.3), (0.56, 0.3), (0.56, 0.82), (0.5, 0.97), (0.44, 0.82)])
    pen.polygon(_rect(0.24, 0.24, 0.76, 0.31))
    pen.polygon(_rect(0.46, 0.09, 0.54, 0.25))
    pen.ellipse(0.5, 0.07, 0.06, 0.06)
    pen.stroke([(0.5, 0.34), (0.5, 0.8)], 0.02, ink=True)


def _arrow(pen: GlyphPen, degrees: float) -> None:
    pivot = (0.5, 0.62)
    pen.stroke(_rotate([(0.5, 0.2), (0.5, 0.86)], degrees, pivot), 0.045)
    pen.polygon(_rotate([(0.5, 0.04), (0.6, 0.22), (0.4, 0.22)], degrees, pivot))
    pen.polygon(_rotate([(0.5, 0.72), (0.59, 0.8), (0.59, 0.93), (0.5, 0.85)], degrees, pivot))
    pen.polygon(_rotate([(0.5, 0.72), (0.41, 0.8), (0.41, 0.93), (0.5, 0.85)], degrees, pivot))


def draw_arrows(pen: GlyphPen) -> None:
    """A sheaf of three arrows crossing low on their shafts (Sebastian's martyrdom)."""
    for degrees in (-24.0, 0.0, 24.0):
        _arrow(pen, degrees)


def draw_lamb(pen: GlyphPen) -> None:
    """A standing lamb with a woolly, cloud-like fleece and a dark face."""
    pen.ellipse(0.46, 0.55, 0.3, 0.16)
    for x, y in ((0.26, 0.45), (0.38, 0.4), (0.5, 0.4), (0.62, 0.43), (0.3, 0.63), (0.52, 0.66)):
        pen.ellipse(x, y, 0.1, 0.1)
    for x in (0.28, 0.38, 0.56, 0.66):
        pen.stroke([(x, 0.62), (x, 0.88)], 0.05)
    pen.ellipse(0.8, 0.38, 0.11, 0.08, tilt=25.0)
    pen.ellipse(0.82, 0.39, 0.07, 0.05, ink=True, tilt=25.0)


def draw_lion(pen: GlyphPen) -> None:
    """A lion: a spiky mane around the head, a long body, four legs and a tufted tail."""
    pen.ellipse(0.58, 0.58, 0.28, 0.13)
    mane = []
    for k in range(22):
        r = 0.22 if k % 2 == 0 else 0.15
        a = 2 * math.pi * k / 22
        mane.append((0.28 + r * math.cos(a), 0.42 + r * math.sin(a)))
    pen.polygon(mane)
    for x in (0.4, 0.5, 0.68, 0.78):
        pen.stroke([(x, 0.62), (x, 0.88)], 0.06)
    pen.stroke([(0.84, 0.55), (0.93, 0.42), (0.9, 0.28)], 0.035)
    pen.ellipse(0.9, 0.25, 0.05, 0.05)
    pen.ellipse(0.28, 0.43, 0.09, 0.09, ink=True)
    pen.ellipse(0.25, 0.41, 0.025, 0.025)
    pen.ellipse(0.31, 0.41, 0.025, 0.025)


def draw_skull(pen: GlyphPen) -> None:
    """A skull seen from the front: cranium, jaw, eye sockets, nose and teeth."""
    pen.ellipse(0.5, 0.42, 0.32, 0.3)
    pen.polygon(_rect(0.34, 0.6, 0.66, 0.84))
    pen.ellipse(0.38, 0.46, 0.08, 0.09, ink=True)
    pen.ellipse(0.62, 0.46, 0.08, 0.09, ink=True)
    pen.polygon([(0.5, 0.56), (0.45, 0.66), (0.55, 0.66)], ink=True)
    for x in (0.4, 0.47, 0.54, 0.61):
        pen.stroke([(x, 0.72), (x, 0.84)], 0.02, ink=True)


def draw_lily(pen: GlyphPen) -> None:
    """A lily stem: three petals on top, two leaves, a long stalk."""
    pen.stroke([(0.5, 0.97), (0.5, 0.3)], 0.05)
    pen.ellipse(0.5, 0.15, 0.08, 0.15)
    pen.ellipse(0.33, 0.26, 0.07, 0.15, tilt=-55.0)
    pen.ellipse(0.67, 0.26, 0.07, 0.15, tilt=55.0)
    pen.ellipse(0.37, 0.62, 0.05, 0.14, tilt=-40.0)
    pen.ellipse(0.63, 0.72, 0.05, 0.14, tilt=40.0)
    pen.stroke([(0.5, 0.3), (0.5, 0.14)], 0.02, ink=True)


def draw_book(pen: GlyphPen) -> None:
    """An open book: two pages splayed from the spine, with lines of text."""
    pen.polygon([(0.06, 0.26), (0.5, 0.36), (0.5, 0.82), (0.06, 0.72)])
    pen.polygon([(0.94, 0.26), (0.5, 0.36), (0.5, 0.82), (0.94, 0.72)])
    pen.stroke([(0.5, 0.36), (0.5, 0.82)], 0.03, ink=True)
    for k in range(4):
        dy = 0.1 * k
        pen.stroke([(0.14, 0.36 + dy), (0.42, 0.43 + dy)], 0.02, ink=True)
        pen.stroke([(0.58, 0.43 + dy), (0.86, 0.36 + dy)], 0.02, ink=True)


def draw_cross(pen: GlyphPen) -> None:
    """A tall Latin cross."""
    pen.polygon(_rect(0.43, 0.03, 0.57, 0.97))
    pen.polygon(_rect(0.2, 0.22, 0.8, 0.35))


def draw_star(pen: GlyphPen) -> None:
    """An eight-pointed star with a round centre."""
    points = []
    for k in range(16):
        r = 0.47 if k % 2 == 0 else 0.2
        a = 2 * math.pi * k / 16 - math.pi / 2
        points.append((0.5 + r * math.cos(a), 0.5 + r * math.sin(a)))
    pen.polygon(points)
    pen.ellipse(0.5, 0.5, 0.07, 0.07, ink=True)


def draw_crown(pen: GlyphPen) -> None:
    """A crown: a band with five points, each tipped with a pearl, and jewels on the band."""
    pen.polygon(
        [(0.1, 0.78), (0.1, 0.3), (0.3, 0.52), (0.5, 0.22), (0.7, 0.52), (0.9, 0.3), (0.9, 0.78)]
    )
    for x, y in ((0.1, 0.26), (0.5, 0.18), (0.9, 0.26)):
        pen.ellipse(x, y, 0.06, 0.06)
    pen.stroke([(0.1, 0.64), (0.9, 0.64)], 0.025, ink=True)
    for x in (0.27, 0.5, 0.73):
        pen.ellipse(x, 0.72, 0.045, 0.045, ink=True)


def draw_wheel(pen: GlyphPen) -> None:
    """A spiked wheel (Catherine's): rim with outward spikes, six spokes, a hub."""
    pen.ring(0.5, 0.5, 0.32, 0.08)
    for k in range(6):
        a = math.pi * k / 3
        pen.stroke([(0.5, 0.5), (0.5 + 0.32 * math.cos(a), 0.5 + 0.32 * math.sin(a))], 0.045)
    for k in range(10):
        a = 2 * math.pi * (k + 0.5) / 10
        c, s = math.cos(a), math.sin(a)
        tip = (0.5 + 0.48 * c, 0.5 + 0.48 * s)
        left = (0.5 + 0.34 * c - 0.06 * s, 0.5 + 0.34 * s + 0.06 * c)
        right = (0.5 + 0.34 * c + 0.06 * s, 0.5 + 0.34 * s - 0.06 * c)
        pen.polygon([left, tip, right])
    pen.ellipse(0.5, 0.5, 0.09, 0.09)
    pen.ellipse(0.5, 0.5, 0.04, 0.04, ink=True)


def draw_jar(pen: GlyphPen) -> None:
    """An ointment jar (Mary Magdalene's): round body, neck, lid and knob, with a painted band."""
    pen.ellipse(0.5, 0.66, 0.3, 0.26)
    pen.polygon(_rect(0.38, 0.3, 0.62, 0.46))
    pen.ellipse(0.5, 0.28, 0.2, 0.07)
    pen.ellipse(0.5, 0.14, 0.07, 0.07)
    pen.stroke([(0.24, 0.62), (0.76, 0.62)], 0.03, ink=True)
    pen.stroke([(0.26, 0.7), (0.74, 0.7)], 0.03, ink=True)


GLYPHS: dict[str, Callable[[GlyphPen], None]] = {
    "keys": draw_keys,
    "sword": draw_sword,
    "arrows": draw_arrows,
    "lamb": draw_lamb,
    "lion": draw_lion,
    "skull": draw_skull,
    "lily": draw_lily,
    "book": draw_book,
    "cross": draw_cross,
    "star": draw_star,
    "crown": draw_crown,
    "wheel": draw_wheel,
    "jar": draw_jar,
}


def render_glyph(name: str, size: float, angle: float = 0.0) -> GlyphMasks:
    """Draw glyph ``name`` at ``size`` pixels, rotated by ``angle`` degrees, on a centred square patch."""
    try:
        design = GLYPHS[name]
    except KeyError:
        raise ValueError(f"unknown glyph {name!r}; known glyphs: {', '.join(GLYPHS)}") from None
    pen = GlyphPen(size, angle)
    design(pen)
    return pen.masks()
