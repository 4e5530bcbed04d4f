"""A synthetic iconography collection: the embedded default that lets every stage run offline.

It mimics saint identification in paintings. Ten saints share one generic figure (robe, head, golden
halo), drawn the same way for all of them; a saint is recognisable *only* by the attributes it holds or
has at its feet, drawn as glyphs (keys, sword, lamb, ...). Several glyphs belong to more than one saint,
and four saints own no glyph of their own, so some saints can only be told apart by the *combination*
of two glyphs next to the same figure, as in real iconography.

Everything else is drawn independently of the saints: palettes, gradients, brush strokes, architecture,
figure sizes and positions, which hand or foot holds which glyph. So global colour or layout statistics
carry no information about the labels; the glyphs' shapes do. Glyph colours follow one rule for all
glyphs (light body, dark outline and details) so a glyph's colour does not reveal it either.

Each image has one to three figures (distinct saints, so the task is multi-label) with figure-level
boxes (label: the saint) and attribute-level boxes (label: ``"<glyph> - <saint>"``), tight around the
pixels actually painted and still visible, half-open pixel coordinates.

Determinism: image ``i`` of seed ``s`` depends only on ``(s, i)`` (NumPy generators seeded from that
pair), never on time, hash seeds or how many images are generated; PNG bytes are written with fixed
settings, so the same seed gives the same files.
"""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from iconolens.atomic import write_bytes_atomically, write_json_atomically
from iconolens.data.glyphs import GLYPH_REACH, GLYPHS, MAX_GLYPH_ANGLE, render_glyph
from iconolens.data.records import ATTRIBUTE_SEPARATOR, Box
from iconolens.errors import BadInputError
from iconolens.progress import progress

RGB = tuple[int, int, int]

#: The saints and the attributes that identify them. Book, skull, crown, star, lily and sword are
#: shared; Paul, Anthony, Dominic and the Virgin Mary are identified only by their pair of glyphs.
SAINT_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "Peter": ("keys", "book"),
    "Paul": ("sword", "book"),
    "Anthony of Padua": ("lily", "book"),
    "Dominic": ("star", "lily"),
    "Virgin Mary": ("crown", "star"),
    "Sebastian": ("arrows", "crown"),
    "Jerome": ("lion", "skull"),
    "Mary Magdalene": ("jar", "skull"),
    "John the Baptist": ("lamb", "cross"),
    "Catherine of Alexandria": ("wheel", "sword"),
}
SAINTS: tuple[str, ...] = tuple(SAINT_ATTRIBUTES)

MIN_IMAGE_SIZE = 96
#: Figures per image are drawn uniformly from 1 to this (the default); fewer make a single-label collection.
MAX_FIGURES = 3
ANNOTATIONS_NAME = "annotations.json"
IMAGES_DIR = "images"
# The canvas grain makes pixels nearly incompressible: level 1 is about as small as 6 and twice as fast.
PNG_COMPRESS_LEVEL = 1

# Figure height as a fraction of the image side, by number of figures (before the width limit).
_HEIGHT_RANGE = {1: (0.58, 0.9), 2: (0.52, 0.85), 3: (0.45, 0.62)}
# Anchor points where a figure holds or shows a glyph.
_ANCHORS = ("left hand", "right hand", "left foot", "right foot")


# --- the plan of one image ---------------------------------------------------------------------


@dataclass(frozen=True)
class GlyphPlan:
    """One attribute as it will be painted: which glyph, where, how large and in which colours."""

    name: str
    cx: float
    cy: float
    size: float
    angle: float
    fill: RGB
    ink: RGB
    texture_seed: int


@dataclass(frozen=True)
class FigurePlan:
    """One generic haloed figure standing for ``saint``, with the glyphs that identify it."""

    saint: str
    cx: float
    top: float
    height: float
    half_width: float
    robe: RGB
    mantle: RGB | None
    mantle_side: int
    skin: RGB
    hair: RGB | None
    halo: RGB
    hands: tuple[tuple[float, float], tuple[float, float]]
    glyphs: tuple[GlyphPlan, ...]
    texture_seed: int


@dataclass(frozen=True)
class ScenePlan:
    """Everything needed to paint one image; painting is a pure function of the plan."""

    size: int
    palette: tuple[RGB, ...]
    light_angle: float
    background_seed: int
    figures: tuple[FigurePlan, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        present = {f.saint for f in self.figures}
        return tuple(s for s in SAINTS if s in present)


@dataclass(frozen=True)
class PaintedScene:
    """The painted pixels and, per figure and per glyph, the mask of its visible painted pixels."""

    pixels: np.ndarray
    figure_masks: tuple[np.ndarray, ...]
    glyph_masks: tuple[tuple[np.ndarray, ...], ...]


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def _palette(rng: np.random.Generator) -> tuple[RGB, ...]:
    """Five background colours in a random harmony (analogous, complementary or triadic)."""
    base = rng.random()
    offsets = [(0.0, 0.05, -0.05), (0.0, 0.5, 0.08), (0.0, 1 / 3, 2 / 3)][int(rng.integers(3))]
    colours = []
    for _ in range(5):
        h = base + offsets[int(rng.integers(len(offsets)))] + rng.normal(0.0, 0.03)
        colours.append(_hsv(h, rng.uniform(0.15, 0.8), rng.uniform(0.25, 0.95)))
    return tuple(colours)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


def _plan_glyph(name: str, cx: float, cy: float, size: float, rng: np.random.Generator) -> GlyphPlan:
    return GlyphPlan(
        name=name,
        cx=cx,
        cy=cy,
        size=size,
        angle=float(rng.uniform(-MAX_GLYPH_ANGLE, MAX_GLYPH_ANGLE)),
        fill=_hsv(rng.random(), rng.uniform(0.0, 0.55), rng.uniform(0.8, 1.0)),
        ink=_hsv(rng.random(), rng.uniform(0.2, 0.7), rng.uniform(0.04, 0.22)),
        texture_seed=_seed(rng),
    )


def _plan_figure(
    saint: str, slot: tuple[float, float], n_figures: int, size: int, rng: np.random.Generator
) -> FigurePlan:
    glyph_ratio = rng.uniform(0.23, 0.28)
    width_ratio = rng.uniform(0.11, 0.14)
    # Half the figure's extent (robe plus glyphs), in figure heights; see glyphs.GLYPH_REACH.
    reach = width_ratio + (0.05 + GLYPH_REACH) * glyph_ratio
    lo, hi = _HEIGHT_RANGE[n_figures]
    height = min(rng.uniform(lo, hi) * size, 0.96 * (slot[1] - slot[0]) / (2 * reach), size - 4.0)
    g = glyph_ratio * height
    w = width_ratio * height
    extent = reach * height
    cx = rng.uniform(slot[0] + extent, slot[1] - extent)
    top = rng.uniform(2.0, size - height - 2.0)

    anchor_xy = {
        "left hand": (cx - w - 0.05 * g, top + 0.47 * height),
        "right hand": (cx + w + 0.05 * g, top + 0.47 * height),
        "left foot": (cx - w - 0.05 * g, top + height - GLYPH_REACH * g),
        "right foot": (cx + w + 0.05 * g, top + height - GLYPH_REACH * g),
    }
    chosen = rng.choice(len(_ANCHORS), size=2, replace=False)
    names = list(SAINT_ATTRIBUTES[saint])
    if rng.random() < 0.5:
        names.reverse()
    glyphs = []
    for name, k in zip(names, chosen):
        x, y = anchor_xy[_ANCHORS[int(k)]]
        glyphs.append(_plan_glyph(name, x, y, g * rng.uniform(0.92, 1.0), rng))

    # Hands hold glyphs at hand anchors; a free hand rests on the chest.
    chest = top + rng.uniform(0.36, 0.44) * height
    hands = []
    for side, anchor in ((-1, "left hand"), (1, "right hand")):
        held = [k for k in chosen if _ANCHORS[int(k)] == anchor]
        if held:
            hands.append((anchor_xy[anchor][0] - side * 0.15 * g, anchor_xy[anchor][1] + 0.1 * g))
        else:
            hands.append((cx + side * 0.25 * w, chest))

    robe = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9))
    # A mantle over one shoulder and a cap of hair on most figures, whatever the saint.
    mantle = None
    if rng.random() < 0.6:
        mantle = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9))
    hair = None
    if rng.random() < 0.6:
        hair = _hsv(rng.uniform(0.0, 0.12), rng.uniform(0.1, 0.7), rng.uniform(0.1, 0.7))
    return FigurePlan(
        saint=saint,
        cx=cx,
        top=top,
        height=height,
        half_width=w,
        robe=robe,
        mantle=mantle,
        mantle_side=int(rng.choice([-1, 1])),
        skin=_hsv(rng.uniform(0.03, 0.1), rng.uniform(0.2, 0.6), rng.uniform(0.45, 0.95)),
        hair=hair,
        halo=_hsv(rng.uniform(0.1, 0.16), rng.uniform(0.45, 0.9), rng.uniform(0.75, 1.0)),
        hands=(hands[0], hands[1]),
        glyphs=tuple(glyphs),
        texture_seed=_seed(rng),
    )


def plan_scene(seed: int, index: int, image_size: int = 224, max_figures: int = MAX_FIGURES) -> ScenePlan:
    """The plan of image ``index`` of the collection generated with ``seed``, with 1 to ``max_figures`` figures."""
    rng = np.random.default_rng([seed, index])
    n_figures = int(rng.integers(1, max_figures + 1))
    saints = [SAINTS[int(k)] for k in rng.choice(len(SAINTS), size=n_figures, replace=False)]
    palette = _palette(rng)
    light_angle = float(rng.uniform(0, 2 * math.pi))
    background_seed = _seed(rng)
    slot = image_size / n_figures
    figures = tuple(
        _plan_figure(saint, (k * slot, (k + 1) * slot), n_figures, image_size, rng)
        for k, saint in enumerate(saints)
    )
    return ScenePlan(
        size=image_size,
        palette=palette,
        light_angle=light_angle,
        background_seed=background_seed,
        figures=figures,
    )


# --- painting ----------------------------------------------------------------------------------


def _jitter(colour: RGB | np.ndarray, rng: np.random.Generator, spread: float) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0.0, spread, 3), 0, 255)


def _paint_background(plan: ScenePlan) -> np.ndarray:
    """Gradient sky, optional ground and arches, low-frequency colour drift, brush strokes, grain."""
    s = plan.size
    scale = s / 224.0
    rng = np.random.default_rng(plan.background_seed)
    pal = np.asarray(plan.palette, np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s

    a = rng.uniform(0, 2 * math.pi)
    t = xx * math.cos(a) + yy * math.sin(a)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = pal[rng.choice(5, size=2, replace=False)]
    canvas = c0 + (c1 - c0) * t[..., None]

    if rng.random() < 0.7:
        horizon = rng.uniform(0.45, 0.85)
        wave = horizon + 0.04 * np.sin(xx[0] * rng.uniform(2, 9) + rng.uniform(0, 6.3))
        ground = (yy >= wave[None, :])[..., None]
        g0, g1 = pal[rng.choice(5, size=2, replace=False)] * rng.uniform(0.6, 1.0)
        ground_colour = g0 + (g1 - g0) * yy[..., None]
        canvas = np.where(ground, ground_colour, canvas)

    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image, "RGBA")
    for _ in range(int(rng.integers(0, 3))):
        x0 = rng.uniform(0, s)
        width = rng.uniform(0.08, 0.25) * s
        y0 = rng.uniform(0.05, 0.5) * s
        rgb = tuple(int(v) for v in _jitter(pal[int(rng.integers(5))], rng, 20))
        colour = rgb + (int(rng.uniform(90, 200)),)
        draw.rectangle((x0, y0 + width / 2, x0 + width, s), fill=colour)
        draw.ellipse((x0, y0, x0 + width, y0 + width), fill=colour)
    base = np.asarray(image)

    n_strokes = int(rng.integers(150, 320) * scale * scale)
    direction = rng.uniform(0, math.pi)
    xs = rng.uniform(0, s, n_strokes)
    ys = rng.uniform(0, s, n_strokes)
    angles = direction + rng.normal(0, 0.45, n_strokes)
    lengths = rng.uniform(5, 22, n_strokes) * scale
    widths = np.maximum(1, np.round(rng.uniform(2, 7, n_strokes) * scale)).astype(int)
    shifts = rng.normal(0, 22, (n_strokes, 3))
    alphas = rng.uniform(40, 140, n_strokes).astype(int)
    under = base[np.minimum(ys.astype(int), s - 1), np.minimum(xs.astype(int), s - 1)].astype(np.float64)
    colours = np.clip(under + shifts, 0, 255).astype(int).tolist()
    for k in range(n_strokes):
        x, y = xs[k], ys[k]
        dx, dy = math.cos(angles[k]) * lengths[k] / 2, math.sin(angles[k]) * lengths[k] / 2
        r, g, b = colours[k]
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=(r, g, b, int(alphas[k])), width=int(widths[k]))

    out = np.asarray(image, np.float32)
    drift = cv2.resize(rng.normal(0, 14, (4, 4, 3)).astype(np.float32), (s, s), interpolation=cv2.INTER_CUBIC)
    out = cv2.GaussianBlur(out + drift, (0, 0), 0.8 * scale)
    # Canvas grain, in luminance (as on a real painted surface) rather than per channel.
    out += rng.uniform(2, 7) * rng.standard_normal((s, s, 1), dtype=np.float32)
    return out


@dataclass(frozen=True)
class _Patch:
    """A boolean mask of an element, stored only over its bounding box at ``(x0, y0)`` of the canvas."""

    mask: np.ndarray
    x0: int
    y0: int

    @property
    def window(self) -> tuple[slice, slice]:
        h, w = self.mask.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)

    def within(self, other: "_Patch") -> "_Patch":
        """The part of this patch that also lies in ``other`` (folds clipped to the robe)."""
        out = np.zeros_like(self.mask)
        x0, y0 = max(self.x0, other.x0), max(self.y0, other.y0)
        x1 = min(self.x0 + self.mask.shape[1], other.x0 + other.mask.shape[1])
        y1 = min(self.y0 + self.mask.shape[0], other.y0 + other.mask.shape[0])
        if x1 > x0 and y1 > y0:
            mine = self.mask[y0 - self.y0 : y1 - self.y0, x0 - self.x0 : x1 - self.x0]
            theirs = other.mask[y0 - other.y0 : y1 - other.y0, x0 - other.x0 : x1 - other.x0]
            out[y0 - self.y0 : y1 - self.y0, x0 - self.x0 : x1 - self.x0] = mine & theirs
        return _Patch(out, self.x0, self.y0)


class _Painter:
    """Paints shaded, textured elements onto a canvas and keeps each tracked element's visible mask.

    Elements are patches (their bounding box only), so painting a small element costs little.
    """

    def __init__(self, canvas: np.ndarray, light_angle: float) -> None:
        self.canvas = canvas
        self.size = canvas.shape[0]
        self.light = (math.cos(light_angle), math.sin(light_angle))
        self.tracked: list[np.ndarray] = []

    def mask(self, draw_fn: Callable[[ImageDraw.ImageDraw], object]) -> _Patch | None:
        image = Image.new("L", (self.size, self.size), 0)
        draw_fn(ImageDraw.Draw(image))
        box = image.getbbox()
        if box is None:
            return None
        return _Patch(np.asarray(image.crop(box)) > 0, box[0], box[1])

    def paint(
        self,
        patch: _Patch | None,
        colour: RGB | np.ndarray,
        rng: np.random.Generator,
        shade: float = 0.25,
        grain: float = 5.0,
    ) -> None:
        """Fill ``patch`` with ``colour``, lit from the scene's light direction, with grain."""
        if patch is None:
            return
        ys, xs = np.nonzero(patch.mask)
        if len(ys) == 0:
            return
        window = patch.window
        proj = ((xs + patch.x0) * self.light[0] + (ys + patch.y0) * self.light[1]).astype(np.float32)
        proj -= proj.mean()
        factor = 1.0 + (0.5 * shade / max(float(np.abs(proj).max()), 1e-6)) * proj
        values = np.asarray(colour, np.float32)[None, :] * factor[:, None]
        values += grain * rng.standard_normal(values.shape, dtype=np.float32)
        self.canvas[window][patch.mask] = values
        for tracked in self.tracked:
            tracked[window] &= ~patch.mask


def _darker(colour: RGB, factor: float) -> RGB:
    return (int(colour[0] * factor), int(colour[1] * factor), int(colour[2] * factor))


def _paint_glyph(painter: _Painter, glyph: GlyphPlan) -> np.ndarray:
    """Paint one glyph (light body, dark outline and details); return its full-image mask."""
    drawn = render_glyph(glyph.name, glyph.size, glyph.angle)
    outline = max(1, int(round(glyph.size / 24.0)))
    kernel = np.ones((2 * outline + 1, 2 * outline + 1), np.uint8)
    body = drawn.fill
    whole = cv2.dilate((body | drawn.ink).astype(np.uint8), kernel) > 0
    dark = (whole & ~body) | drawn.ink

    s = painter.size
    side = drawn.side
    ox = int(round(glyph.cx - side / 2.0))
    oy = int(round(glyph.cy - side / 2.0))
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + side, s), min(oy + side, s)
    full = np.zeros((s, s), bool)
    if x1 <= x0 or y1 <= y0:
        return full
    whole = whole[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    dark = dark[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    rng = np.random.default_rng(glyph.texture_seed)
    painter.paint(_Patch(whole & ~dark, x0, y0), glyph.fill, rng, shade=0.2, grain=4.0)
    painter.paint(_Patch(dark, x0, y0), glyph.ink, rng, shade=0.0, grain=3.0)
    full[y0:y1, x0:x1] = whole
    return full


def _paint_figure(
    painter: _Painter, figure: FigurePlan, hidden_glyphs: frozenset[int]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Paint the generic figure, then its glyphs; return the figure's mask and each glyph's mask."""
    rng = np.random.default_rng(figure.texture_seed)
    cx, top, h, w = figure.cx, figure.top, figure.height, figure.half_width
    head_y = top + 0.14 * h
    head_r = 0.075 * h
    halo_r = 0.135 * h
    shoulder_y = top + 0.25 * h
    hem_y = top + h
    figure_mask = np.zeros((painter.size, painter.size), bool)
    painter.tracked.append(figure_mask)

    def add(patch: _Patch | None, colour: RGB, shade: float = 0.3, grain: float = 5.0) -> None:
        if patch is None:
            return
        painter.paint(patch, colour, rng, shade, grain)
        figure_mask[patch.window] |= patch.mask

    halo_box = (cx - halo_r, head_y - halo_r, cx + halo_r, head_y + halo_r)
    add(painter.mask(lambda d: d.ellipse(halo_box, fill=255)), figure.halo, shade=0.15)
    ring_w = max(1, int(round(0.012 * h)))
    rim = painter.mask(lambda d: d.ellipse(halo_box, outline=255, width=ring_w))
    add(rim, _darker(figure.halo, 0.65), shade=0.0)

    robe_poly = [
        (cx - 0.72 * w, shoulder_y),
        (cx + 0.72 * w, shoulder_y),
        (cx + w, hem_y - 1),
        (cx - w, hem_y - 1),
    ]
    robe = painter.mask(lambda d: d.polygon(robe_poly, fill=255))
    add(robe, figure.robe, shade=0.45)
    fold_width = max(1, int(round(0.012 * h)))
    folds = painter.mask(
        lambda d: [
            d.line(
                [(cx + k * 0.3 * w, shoulder_y + 0.25 * h), (cx + k * 0.55 * w, hem_y - 2)],
                fill=255,
                width=fold_width,
            )
            for k in (-1, 0, 1)
        ]
    )
    if folds is not None and robe is not None:
        add(folds.within(robe), _darker(figure.robe, 0.7), shade=0.0)
    if figure.mantle is not None:
        side = figure.mantle_side
        mantle_poly = [
            (cx + side * 0.72 * w, shoulder_y),
            (cx - side * 0.2 * w, shoulder_y),
            (cx - side * 0.1 * w, top + 0.7 * h),
            (cx + side * w * 0.95, hem_y - 0.1 * h),
        ]
        add(painter.mask(lambda d: d.polygon(mantle_poly, fill=255)), figure.mantle, shade=0.45)

    arm_w = max(2, int(round(0.07 * h)))
    sleeve = figure.mantle if figure.mantle is not None else figure.robe
    for side, hand in zip((-1, 1), figure.hands):
        shoulder = (cx + side * 0.62 * w, shoulder_y + 0.03 * h)
        arm = painter.mask(lambda d: d.line([shoulder, hand], fill=255, width=arm_w, joint="curve"))
        add(arm, _darker(sleeve, 0.9), shade=0.3)

    neck_box = (cx - 0.3 * head_r, head_y, cx + 0.3 * head_r, shoulder_y + 1)
    add(painter.mask(lambda d: d.rectangle(neck_box, fill=255)), _darker(figure.skin, 0.85), shade=0.2)
    head_box = (cx - head_r, head_y - head_r, cx + head_r, head_y + head_r)
    add(painter.mask(lambda d: d.ellipse(head_box, fill=255)), figure.skin, shade=0.35)
    if figure.hair is not None:
        add(painter.mask(lambda d: d.chord(head_box, 180, 360, fill=255)), figure.hair, shade=0.3)
    hand_r = max(1.5, 0.028 * h)
    for hx, hy in figure.hands:
        palm_box = (hx - hand_r, hy - hand_r, hx + hand_r, hy + hand_r)
        palm = painter.mask(lambda d: d.ellipse(palm_box, fill=255))
        add(palm, figure.skin, shade=0.2)

    glyph_masks: list[np.ndarray] = []
    for k, glyph in enumerate(figure.glyphs):
        if k in hidden_glyphs:
            glyph_masks.append(np.zeros((painter.size, painter.size), bool))
            continue
        mask = _paint_glyph(painter, glyph)
        figure_mask |= mask
        painter.tracked.append(mask)
        glyph_masks.append(mask)
    return figure_mask, glyph_masks


def paint_scene(
    plan: ScenePlan,
    hidden_figures: frozenset[int] = frozenset(),
    hidden_glyphs: frozenset[tuple[int, int]] = frozenset(),
) -> PaintedScene:
    """Paint ``plan``; figures in ``hidden_figures`` and ``(figure, glyph)`` pairs in ``hidden_glyphs``
    are left out (so a caller can see exactly which pixels an element changed).

    Masks hold the pixels each element painted that no later element covered.
    """
    canvas = _paint_background(plan)
    painter = _Painter(canvas, plan.light_angle)
    figure_masks: list[np.ndarray] = []
    glyph_masks: list[tuple[np.ndarray, ...]] = []
    for i, figure in enumerate(plan.figures):
        if i in hidden_figures:
            empty = np.zeros((plan.size, plan.size), bool)
            figure_masks.append(empty)
            glyph_masks.append(tuple(empty.copy() for _ in figure.glyphs))
            continue
        hidden = frozenset(k for f, k in hidden_glyphs if f == i)
        fmask, gmasks = _paint_figure(painter, figure, hidden)
        figure_masks.append(fmask)
        glyph_masks.append(tuple(gmasks))
    pixels = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return PaintedScene(pixels=pixels, figure_masks=tuple(figure_masks), glyph_masks=tuple(glyph_masks))


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The tight half-open box ``(x0, y0, x1, y1)`` around a boolean mask's pixels (None if empty)."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if len(cols) == 0:
        return None
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def scene_boxes(plan: ScenePlan, painted: PaintedScene) -> tuple[Box, ...]:
    """Figure boxes (label: the saint) followed by their attribute boxes (``"<glyph> - <saint>"``)."""
    boxes: list[Box] = []
    for figure, fmask, gmasks in zip(plan.figures, painted.figure_masks, painted.glyph_masks):
        box = mask_box(fmask)
        if box is None:
            continue
        boxes.append(Box(*box, label=figure.saint, level="figure"))
        for glyph, gmask in zip(figure.glyphs, gmasks):
            gbox = mask_box(gmask)
            if gbox is not None:
                label = f"{glyph.name}{ATTRIBUTE_SEPARATOR}{figure.saint}"
                boxes.append(Box(*gbox, label=label, level="attribute"))
    return tuple(boxes)


# --- the collection on disk ----------------------------------------------------------------------


def synthetic_categories() -> list[dict[str, object]]:
    """COCO categories: the saints (figure level), then each saint's attributes (attribute level)."""
    categories: list[dict[str, object]] = []
    for saint in SAINTS:
        categories.append(
            {"id": len(categories) + 1, "name": saint, "supercategory": "saint", "level": "figure"}
        )
    for saint in SAINTS:
        for glyph in SAINT_ATTRIBUTES[saint]:
            categories.append(
                {
                    "id": len(categories) + 1,
                    "name": f"{glyph}{ATTRIBUTE_SEPARATOR}{saint}",
                    "supercategory": "attribute",
                    "level": "attribute",
                }
            )
    return categories


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes with fixed settings and no metadata, so equal pixels give equal bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def image_file_name(index: int) -> str:
    """The image's path relative to the collection folder (as stored in the COCO ``file_name``)."""
    return f"{IMAGES_DIR}/{index + 1:06d}.png"


def write_synthetic_collection(
    out_dir: str | Path, n_images: int, seed: int, image_size: int = 224, max_figures: int = MAX_FIGURES
) -> Path:
    """Write ``n_images`` synthetic paintings to ``out_dir/images/`` and their COCO annotations to
    ``out_dir/annotations.json``; return the annotations path.

    ``max_figures=1`` paints one saint per image (a single-label collection, as ArtDL's images mostly are);
    the default paints one to three, so the task is multi-label.

    Image entries carry ``labels`` (the saints present); ``file_name`` is relative to ``out_dir``.
    Images are written first and the annotations last, each atomically, so an annotations file never
    refers to a half-written image.
    """
    out_dir = Path(out_dir)
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise BadInputError(
            f"the number of images must be a positive whole number, not {n_images!r}", out_dir
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BadInputError(f"the seed must be a non-negative whole number, not {seed!r}", out_dir)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise BadInputError(
            f"the image size must be a whole number of at least {MIN_IMAGE_SIZE} pixels so that "
            f"attributes stay legible, not {image_size!r}",
            out_dir,
        )
    if isinstance(max_figures, bool) or not isinstance(max_figures, int) or not 1 <= max_figures <= MAX_FIGURES:
        raise BadInputError(f"figures per image must be 1 to {MAX_FIGURES}, not {max_figures!r}", out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInputError("the output folder is an existing file", out_dir)
    if (out_dir / IMAGES_DIR).exists() and not (out_dir / IMAGES_DIR).is_dir():
        raise BadInputError("the images folder is an existing file", out_dir / IMAGES_DIR)

    categories = synthetic_categories()
    category_id = {str(c["name"]): int(c["id"]) for c in categories}  # type: ignore[call-overload]
    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for index in progress(range(n_images), "Painting synthetic collection", total=n_images):
        plan = plan_scene(seed, index, image_size, max_figures)
        painted = paint_scene(plan)
        name = image_file_name(index)
        write_bytes_atomically(out_dir / name, encode_png(painted.pixels))
        image_id = index + 1
        images.append(
            {
                "id": image_id,
                "file_name": name,
                "width": image_size,
                "height": image_size,
                "labels": list(plan.labels),
            }
        )
        for box in scene_boxes(plan, painted):
            x0, y0, x1, y1 = (int(v) for v in box.xyxy)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id[box.label],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    coco = {
        "info": {
            "description": "iconolens synthetic iconography collection",
            "seed": seed,
            "images": n_images,
            "image_size": image_size,
            "max_figures": max_figures,
        },
        "licenses": [],
        "classes": list(SAINTS),
        "multi_label": max_figures > 1,
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    return write_json_atomically(out_dir / ANNOTATIONS_NAME, coco)


__all__ = [
    "GLYPHS",
    "SAINTS",
    "SAINT_ATTRIBUTES",
    "FigurePlan",
    "GlyphPlan",
    "PaintedScene",
    "ScenePlan",
    "mask_box",
    "paint_scene",
    "plan_scene",
    "scene_boxes",
    "synthetic_categories",
    "write_synthetic_collection",
]
