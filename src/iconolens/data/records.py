"""The in-memory model of a collection: samples, their labels and their boxes.

Boxes are ``(x0, y0, x1, y1)`` in pixels of the original image, half-open (``x1`` is one past the last
column), so width is ``x1 - x0``. Readers convert other conventions (VOC is 1-based inclusive) on reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

Level = Literal["figure", "attribute"]
ATTRIBUTE_SEPARATOR = " - "


@dataclass(frozen=True)
class Box:
    """A rectangle with the class it shows; ``level`` says whether it is a whole figure or a symbol."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str
    level: Level = "figure"
    difficult: bool = False

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def figure_class(self) -> str:
        """The class a box belongs to: the figure itself, or the figure an attribute is tied to.

        ``"keys - Peter"`` belongs to ``"Peter"``; a figure box ``"Peter"`` to ``"Peter"``.
        """
        if self.level == "attribute" and ATTRIBUTE_SEPARATOR in self.label:
            return self.label.split(ATTRIBUTE_SEPARATOR, 1)[1]
        return self.label

    @property
    def attribute(self) -> str | None:
        """The symbol's name for an attribute box (``"keys"`` of ``"keys - Peter"``), else None."""
        if self.level == "attribute":
            return self.label.split(ATTRIBUTE_SEPARATOR, 1)[0]
        return None


@dataclass(frozen=True)
class Canvas:
    """Where an image came from in a IIIF manifest: the canvas id and its size in canvas coordinates.

    Boxes of a sample are in the pixels of its image file; ``canvas_scale`` turns them into the canvas's own
    coordinates (what a IIIF viewer's ``#xywh=`` fragment means), which differ when a smaller image was fetched.
    """

    id: str
    width: int
    height: int
    manifest: str | None = None


@dataclass(frozen=True)
class Sample:
    """One image of a collection with its image-level labels and optional boxes."""

    id: str
    path: Path
    labels: tuple[str, ...]
    boxes: tuple[Box, ...] = ()
    width: int | None = None
    height: int | None = None
    split: str | None = None
    canvas: Canvas | None = None

    def canvas_scale(self) -> tuple[float, float] | None:
        """(x, y) factors from image pixels to canvas coordinates, or None without a canvas or image size."""
        if self.canvas is None or not self.width or not self.height:
            return None
        return self.canvas.width / self.width, self.canvas.height / self.height

    def boxes_of(self, cls: str, level: Level | None = None) -> tuple[Box, ...]:
        """The boxes belonging to class ``cls`` (figures, attributes, or both when ``level`` is None)."""
        return tuple(
            b for b in self.boxes if b.figure_class == cls and (level is None or b.level == level)
        )


@dataclass(frozen=True)
class Problem:
    """A file that was skipped, and why (one sentence)."""

    path: str
    message: str


@dataclass(frozen=True)
class Dataset:
    """A collection: samples, the ordered class list, and the files that could not be used."""

    samples: tuple[Sample, ...]
    classes: tuple[str, ...]
    multi_label: bool = False
    root: Path | None = None
    problems: tuple[Problem, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.samples)

    def class_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def subset(self, split: str) -> "Dataset":
        """The samples of one split (``train``, ``val``, ``test``), same classes."""
        return replace(self, samples=tuple(s for s in self.samples if s.split == split))

    def with_samples(self, samples: tuple[Sample, ...]) -> "Dataset":
        return replace(self, samples=tuple(samples))
