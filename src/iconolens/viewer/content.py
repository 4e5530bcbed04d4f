"""What the viewer shows, independent of where it came from: a header for the run and one record per image.

Classifier runs and detector reports are both turned into these records (see ``classifier_run`` and
``detector_run``), so one site and one page script serve both: a map is always "method x target", where a
target is a class of a classifier or one explained box of a detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: A box as the viewer draws it: x0, y0, x1, y1 in the image's pixels (half-open), label, and an extra value
#: (level for expert boxes, score for derived boxes and detections).
BoxRow = tuple[float, float, float, float, str, object]


@dataclass(frozen=True)
class MapSet:
    """The maps of one method for one image: one ``(h, w)`` map per target, raw (scaled in the viewer)."""

    targets: tuple[str, ...]
    raw: np.ndarray
    #: For detector targets: the box each map explains, drawn with it.
    target_boxes: tuple[BoxRow, ...] = ()


@dataclass(frozen=True)
class Measure:
    """An image-level number the gallery can sort by; ``key`` is unique in the run."""

    key: str
    title: str
    higher_is_better: bool


@dataclass(frozen=True)
class ViewerImage:
    """One image: where its pixels are, what it is labelled, what the model said, its maps and measures."""

    id: str
    path: Path
    width: int
    height: int
    split: str | None = None
    labels: tuple[str, ...] = ()
    #: Class probabilities in the header's class order, or empty when the run has none.
    probabilities: tuple[float, ...] = ()
    predicted: tuple[str, ...] = ()
    #: Outcome flags: ``correct`` (nothing wrong), ``wrong`` (a claim not in the labels), ``missed`` (a label
    #: not claimed); empty when the run made no predictions.
    outcome: frozenset[str] = frozenset()
    expert_boxes: tuple[BoxRow, ...] = ()
    #: Boxes the run already holds, by name: boxes derived from maps, or a detector's detections.
    stored_boxes: dict[str, tuple[BoxRow, ...]] = field(default_factory=dict)
    maps: dict[str, MapSet] = field(default_factory=dict)
    #: Image-level values by ``Measure.key``; per target (class) values in ``target_measures``.
    measures: dict[str, float] = field(default_factory=dict)
    target_measures: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class ViewerHeader:
    """What holds for the whole run: its kind, classes, methods and the measures images carry."""

    title: str
    kind: str  # "classifier" or "detector"
    classes: tuple[str, ...]
    methods: tuple[str, ...]
    measures: tuple[Measure, ...] = ()
    levels: tuple[str, ...] = ("figure",)
    notes: tuple[str, ...] = ()
