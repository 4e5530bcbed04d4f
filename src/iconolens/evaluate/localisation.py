"""How well saliency maps agree with expert boxes, over a sweep of thresholds.

The protocol is Pinciroli Vago's (2021): each map is upsampled to its image, min-max normalised, and
thresholded at t = 0.00, 0.05, ..., 1.00 (foreground: value >= t, compared in double precision). Against the
boxes of the map's class, four metrics are measured (see :mod:`iconolens.evaluate.declarations`):

* component IoU: per box, IoU between the box and the union of the foreground's connected components
  (8-connectivity) that intersect it;
* global IoU: IoU between the union of the boxes and the whole foreground;
* box coverage: whether the foreground covers at least 20% of a box;
* irrelevant attention: share of the foreground outside every box.

Defined results at the edges (so that nothing crashes and nothing silently biases an average):

* an empty foreground (a constant map, whose normalisation is all zeros, above t = 0) has component IoU 0,
  global IoU 0 and coverage 0 (the map points at nothing, so it finds nothing), and an *undefined*
  irrelevant attention (0 of 0 pixels), recorded as NaN and left out of averages: counting it as 0 would
  reward a map for looking nowhere;
* an image whose class has no box at the chosen level is not measured for that class (there is nothing to
  compare with) and is counted under ``no_boxes``;
* a class the map store does not know (the model was trained without it) is counted under
  ``class_not_in_maps``; an image without stored maps under ``missing_maps``.

Averages: per-box metrics (component IoU, coverage) are averaged per box label (a symbol such as
"keys - Peter" at attribute level, the class at figure level), then over labels; per-map metrics (global IoU,
irrelevant attention) are averaged per class, then over classes. A class's own value averages only its labels.

Maps are measured on the image's own pixel grid, or, for images larger than ``max_side`` (256 by default)
on their longer side, on a proportionally smaller grid with the boxes scaled alike: every metric is a ratio
of areas, so this changes results only by pixel rounding (a box that rounds to no area there is dropped),
and it makes the sweep several times faster on photographs of paintings. Pass ``max_side=None`` for the
full grid.

All thresholds of one map are measured from sorted pixel values (one sort per region); only the connected
components are labelled once per threshold, by OpenCV.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from iconolens.data.records import Dataset, Level, Sample
from iconolens.errors import BadInputError
from iconolens.evaluate.declarations import (
    BOX_COVERAGE,
    COMPONENT_IOU,
    GLOBAL_IOU,
    IRRELEVANT_ATTENTION,
    LOCALISATION_METRICS,
    MetricDeclaration,
)
from iconolens.explain.normalise import normalise_maps
from iconolens.explain.store import MapStore
from iconolens.progress import progress

THRESHOLDS: np.ndarray = np.round(np.arange(21) * 0.05, 2)
COVERAGE_SHARE = 0.2
DEFAULT_MAX_SIDE = 256
ALL_CLASSES = "(all)"

BoxXYXY = tuple[float, float, float, float]


def normalised_maps(raw: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Raw ``(C, h, w)`` maps of one image as ``(C, H, W)`` float32 in [0, 1] at the image's ``size`` (H, W)."""
    tensor = torch.as_tensor(np.asarray(raw, dtype=np.float32))[None]
    return normalise_maps(tensor, size)[0].numpy().astype(np.float32, copy=False)


def pixel_box(box: BoxXYXY, width: int, height: int) -> tuple[int, int, int, int]:
    """A box rounded to whole pixels and clipped to the image (half-open, so it may be empty)."""
    x0, y0, x1, y1 = box
    cx0 = min(max(int(round(x0)), 0), width)
    cy0 = min(max(int(round(y0)), 0), height)
    cx1 = min(max(int(round(x1)), cx0), width)
    cy1 = min(max(int(round(y1)), cy0), height)
    return cx0, cy0, cx1, cy1


def _has_area(cell: tuple[int, int, int, int]) -> bool:
    return cell[2] > cell[0] and cell[3] > cell[1]


def _count_at_least(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of ``sorted_values`` are >= each threshold."""
    return sorted_values.size - np.searchsorted(sorted_values, thresholds, side="left")


@dataclass(frozen=True)
class MapLocalisation:
    """The four metrics of one normalised map against its class's boxes, at every threshold.

    Per box ``(B, T)``: ``component_iou``, ``covered`` (bool). Per map ``(T,)``: ``global_iou``,
    ``irrelevant_attention`` (NaN where the foreground is empty) and ``foreground_pixels``.
    """

    thresholds: np.ndarray
    component_iou: np.ndarray
    covered: np.ndarray
    global_iou: np.ndarray
    irrelevant_attention: np.ndarray
    foreground_pixels: np.ndarray

    @property
    def mean_component_iou(self) -> np.ndarray:
        """Component IoU averaged over this map's boxes, per threshold."""
        return self.component_iou.mean(axis=0)


def localisation_curves(
    saliency: np.ndarray,
    boxes: Sequence[BoxXYXY],
    thresholds: Sequence[float] | np.ndarray = THRESHOLDS,
) -> MapLocalisation:
    """Measure one normalised ``(H, W)`` map against ``boxes`` (pixel ``(x0, y0, x1, y1)``, half-open).

    Boxes are rounded to whole pixels and clipped to the map; at least one must keep a positive area.
    """
    values = np.asarray(saliency, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"saliency must be one (H, W) map, got shape {values.shape}")
    height, width = values.shape
    ts = np.asarray(thresholds, dtype=np.float64)
    cells = [pixel_box(b, width, height) for b in boxes]
    cells = [c for c in cells if _has_area(c)]
    if not cells:
        raise ValueError("no box with a positive area inside the map")

    n_pixels = values.size
    foreground = _count_at_least(np.sort(values, axis=None), ts)
    union_mask = np.zeros((height, width), dtype=bool)
    box_inside = np.empty((len(cells), ts.size), dtype=np.int64)
    box_area = np.empty(len(cells), dtype=np.int64)
    for i, (x0, y0, x1, y1) in enumerate(cells):
        region = values[y0:y1, x0:x1]
        box_area[i] = region.size
        box_inside[i] = _count_at_least(np.sort(region, axis=None), ts)
        union_mask[y0:y1, x0:x1] = True

    union_area = int(union_mask.sum())
    inside = _count_at_least(np.sort(values[union_mask]), ts)
    global_iou = inside / (union_area + foreground - inside)
    with np.errstate(invalid="ignore", divide="ignore"):
        irrelevant = np.where(foreground > 0, (foreground - inside) / foreground, np.nan)
    covered = box_inside >= COVERAGE_SHARE * box_area[:, None]

    component = np.zeros((len(cells), ts.size), dtype=np.float64)
    for k, t in enumerate(ts):
        if foreground[k] == 0:
            continue  # nothing in the foreground: every box has IoU 0
        if foreground[k] == n_pixels:
            component[:, k] = box_area / n_pixels  # one component, the whole image
            continue
        if k > 0 and foreground[k] == foreground[k - 1] and ts[k] >= ts[k - 1]:
            component[:, k] = component[:, k - 1]  # nested foregrounds of equal size are the same pixels
            continue
        mask = (values >= t).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        areas = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
        areas[0] = 0  # the background label
        for i, (x0, y0, x1, y1) in enumerate(cells):
            touched = np.bincount(labels[y0:y1, x0:x1].ravel(), minlength=count) > 0
            inter = box_inside[i, k]  # every foreground pixel in the box belongs to a touching component
            reached = int(areas[touched].sum())
            component[i, k] = inter / (box_area[i] + reached - inter)

    return MapLocalisation(
        thresholds=ts,
        component_iou=component,
        covered=covered,
        global_iou=global_iou,
        irrelevant_attention=irrelevant,
        foreground_pixels=foreground,
    )


def classes_in(sample: Sample, level: Level) -> list[str]:
    """The classes an image shows: its labels, then any class that only its boxes name."""
    found = list(dict.fromkeys(sample.labels))
    for box in sample.boxes:
        if box.level == level and box.figure_class not in found:
            found.append(box.figure_class)
    return found


def _mean_curve(curves: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of curves, ignoring NaN entries; NaN where no curve has a number."""
    stack = np.vstack(curves)
    ok = ~np.isnan(stack)
    total = np.where(ok, stack, 0.0).sum(axis=0)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


@dataclass
class _MethodTally:
    """Curves collected for one method, grouped the way the averages need them."""

    by_label: dict[str, dict[str, list[np.ndarray]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )  # metric -> (class, label) key -> curves
    by_class: dict[str, dict[str, list[np.ndarray]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )  # metric -> class -> curves
    label_class: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, cls: str, labels: Sequence[str], result: MapLocalisation) -> None:
        for i, label in enumerate(labels):
            self.label_class[label] = cls
            self.by_label[COMPONENT_IOU.key][label].append(result.component_iou[i])
            self.by_label[BOX_COVERAGE.key][label].append(result.covered[i].astype(np.float64))
        self.by_class[GLOBAL_IOU.key][cls].append(result.global_iou)
        self.by_class[IRRELEVANT_ATTENTION.key][cls].append(result.irrelevant_attention)
        self.counts["maps"] += 1
        self.counts["boxes"] += len(labels)

    def curves(self, thresholds: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """class (or ALL_CLASSES) -> metric -> curve over thresholds."""
        out: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
        nan = np.full(thresholds.size, np.nan)
        classes = sorted(set(self.label_class.values()) | set(self.by_class[GLOBAL_IOU.key]))
        for metric in LOCALISATION_METRICS:
            if metric.item == "box":
                label_means = {lab: _mean_curve(c) for lab, c in self.by_label[metric.key].items()}
                for cls in classes:
                    mine = [m for lab, m in label_means.items() if self.label_class[lab] == cls]
                    out[cls][metric.key] = _mean_curve(mine) if mine else nan
                overall = list(label_means.values())
            else:
                class_means = {cls: _mean_curve(c) for cls, c in self.by_class[metric.key].items()}
                for cls in classes:
                    out[cls][metric.key] = class_means.get(cls, nan)
                overall = list(class_means.values())
            out[ALL_CLASSES][metric.key] = _mean_curve(overall) if overall else nan
        return dict(out)


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


@dataclass(frozen=True)
class LocalisationReport:
    """Curves per method, per class and over all classes (``ALL_CLASSES``), with what was skipped and why.

    ``curves[method][class][metric_key]`` is an array over ``thresholds``.
    """

    thresholds: np.ndarray
    level: str
    curves: dict[str, dict[str, dict[str, np.ndarray]]]
    counts: dict[str, dict[str, int]]
    metrics: tuple[MetricDeclaration, ...] = LOCALISATION_METRICS

    @property
    def methods(self) -> list[str]:
        return list(self.curves)

    def value(self, method: str, metric: str, threshold: float, cls: str = ALL_CLASSES) -> float:
        """One number: ``metric`` of ``method`` at ``threshold`` for ``cls`` (all classes by default)."""
        k = int(np.argmin(np.abs(self.thresholds - threshold)))
        return float(self.curves[method][cls][metric][k])

    def peak(self, method: str, metric: str, cls: str = ALL_CLASSES) -> tuple[float, float]:
        """(best value, threshold where it occurs) of a metric, in its declared direction."""
        decl = next(m for m in self.metrics if m.key == metric)
        curve = self.curves[method][cls][metric]
        if np.all(np.isnan(curve)):
            return float("nan"), float("nan")
        k = int(np.nanargmax(curve) if decl.higher_is_better else np.nanargmin(curve))
        return float(curve[k]), float(self.thresholds[k])

    def rows(self) -> list[dict[str, Any]]:
        """Long-format rows (method, class, metric, threshold, value) for a CSV file."""
        out = []
        for method, by_class in self.curves.items():
            for cls, by_metric in by_class.items():
                for metric in self.metrics:
                    for t, v in zip(self.thresholds, by_metric[metric.key]):
                        out.append({
                            "method": method,
                            "class": cls,
                            "metric": metric.key,
                            "threshold": f"{t:.2f}",
                            "value": "" if math.isnan(v) else f"{v:.6f}",
                        })
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "thresholds": [round(float(t), 2) for t in self.thresholds],
            "metrics": [m.to_json() for m in self.metrics],
            "counts": self.counts,
            "curves": {
                method: {
                    cls: {key: [_json_number(v) for v in curve] for key, curve in by_metric.items()}
                    for cls, by_metric in by_class.items()
                }
                for method, by_class in self.curves.items()
            },
            "peaks": {
                method: {m.key: dict(zip(("value", "threshold"), self.peak(method, m.key))) for m in self.metrics}
                for method in self.curves
            },
        }


def localisation_report(
    items: Iterable[tuple[str, str, Sequence[str], MapLocalisation]],
    level: str,
    thresholds: np.ndarray = THRESHOLDS,
    skipped: Mapping[str, Mapping[str, int]] | None = None,
) -> LocalisationReport:
    """Average measured maps ``(method, class, box labels, result)`` into a report."""
    tallies: dict[str, _MethodTally] = {}
    for method, cls, labels, result in items:
        tallies.setdefault(method, _MethodTally()).add(cls, labels, result)
    for method in skipped or {}:
        tallies.setdefault(method, _MethodTally())
    counts: dict[str, dict[str, int]] = {}
    for method, tally in tallies.items():
        merged = {"maps": 0, "boxes": 0, "no_boxes": 0, "class_not_in_maps": 0, "missing_maps": 0}
        merged.update(tally.counts)
        merged.update((skipped or {}).get(method, {}))
        counts[method] = merged
    return LocalisationReport(
        thresholds=np.asarray(thresholds, dtype=np.float64),
        level=level,
        curves={m: t.curves(np.asarray(thresholds)) for m, t in tallies.items()},
        counts=counts,
    )


def _scaled(box: BoxXYXY, scale: float) -> BoxXYXY:
    return (box[0] * scale, box[1] * scale, box[2] * scale, box[3] * scale)


def image_size_of(sample: Sample) -> tuple[int, int]:
    """(H, W) of a sample, reading the image header when the annotations do not say."""
    if sample.width is not None and sample.height is not None:
        return int(sample.height), int(sample.width)
    from iconolens.data.images import image_size

    width, height = image_size(sample.path)
    return int(height), int(width)


def measure_sample(
    sample: Sample,
    raw: np.ndarray,
    store_classes: Sequence[str],
    level: Level,
    thresholds: np.ndarray = THRESHOLDS,
    size: tuple[int, int] | None = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> tuple[list[tuple[str, list[str], MapLocalisation]], dict[str, int]]:
    """Measure the maps of one image for every class it shows; also return what was skipped.

    With ``max_side``, an image larger than that on its longer side is measured on a proportionally
    smaller grid (maps upsampled to it, boxes scaled by the same factor); the metrics are ratios of areas,
    so only pixel rounding changes.
    """
    full_height, full_width = size or image_size_of(sample)
    scale = 1.0
    if max_side is not None and max(full_height, full_width) > max_side:
        scale = max_side / max(full_height, full_width)
    height, width = max(1, round(full_height * scale)), max(1, round(full_width * scale))
    index = {c: i for i, c in enumerate(store_classes)}
    skipped = {"no_boxes": 0, "class_not_in_maps": 0}
    wanted: list[tuple[str, list[BoxXYXY], list[str]]] = []
    for cls in classes_in(sample, level):
        boxes = [_scaled(b.xyxy, scale) for b in sample.boxes_of(cls, level)]
        labels = [b.label for b in sample.boxes_of(cls, level)]
        kept = [i for i, b in enumerate(boxes) if _has_area(pixel_box(b, width, height))]
        boxes, labels = [boxes[i] for i in kept], [labels[i] for i in kept]
        if not boxes:
            skipped["no_boxes"] += 1
        elif cls not in index:
            skipped["class_not_in_maps"] += 1
        else:
            wanted.append((cls, boxes, labels))
    if not wanted:
        return [], skipped
    maps = normalised_maps(raw[[index[c] for c, _, _ in wanted]], (height, width))
    out = []
    for (cls, boxes, labels), saliency in zip(wanted, maps):
        out.append((cls, labels, localisation_curves(saliency, boxes, thresholds)))
    return out, skipped


MeasuredItem = tuple[str, str, Sequence[str], MapLocalisation]  # method, class, box labels, curves


@dataclass
class MeasuredMaps:
    """The measured maps of some images, in image order, and per method what was skipped: the part of a sweep
    that slices of a collection compute independently (on Ray workers, say) and :meth:`joined` puts together."""

    items: list[MeasuredItem]
    skipped: dict[str, dict[str, int]]

    @staticmethod
    def joined(parts: Iterable[MeasuredMaps]) -> MeasuredMaps:
        """The parts of consecutive slices as if measured in one pass (items in order, counts added)."""
        items: list[MeasuredItem] = []
        skipped: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for part in parts:
            items.extend(part.items)
            for method, counts in part.skipped.items():
                total = skipped[method]  # named even when nothing of it was skipped
                for key, n in counts.items():
                    total[key] += n
        return MeasuredMaps(items, {m: dict(c) for m, c in skipped.items()})

    def report(self, level: str, thresholds: np.ndarray = THRESHOLDS) -> LocalisationReport:
        return localisation_report(self.items, level, thresholds, self.skipped)


def measure_maps(
    samples: Iterable[Sample],
    stores: Mapping[str, MapStore],
    level: Level = "figure",
    thresholds: Sequence[float] | np.ndarray = THRESHOLDS,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> MeasuredMaps:
    """Every method's stored maps of ``samples`` measured against their boxes (see ``measure_sample``)."""
    ts = np.asarray(thresholds, dtype=np.float64)
    classes = {method: store.classes for method, store in stores.items()}
    skipped: dict[str, dict[str, int]] = {m: defaultdict(int) for m in stores}
    items: list[MeasuredItem] = []
    for sample in samples:
        size: tuple[int, int] | None = None
        for method, store in stores.items():
            if not store.has(sample.id):
                skipped[method]["missing_maps"] += 1
                continue
            if size is None:
                size = image_size_of(sample)
            raw, _ = store.read(sample.id)
            measured, skips = measure_sample(sample, raw, classes[method], level, ts, size, max_side)
            for key, n in skips.items():
                skipped[method][key] += n
            items.extend((method, cls, labels, result) for cls, labels, result in measured)
    return MeasuredMaps(items, {m: dict(s) for m, s in skipped.items()})


def evaluate_localisation(
    dataset: Dataset,
    stores: Mapping[str, MapStore],
    level: Level = "figure",
    thresholds: Sequence[float] | np.ndarray = THRESHOLDS,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> LocalisationReport:
    """The threshold sweep for every method's stored maps over every sample of ``dataset``.

    ``max_side`` caps the measuring grid's longer side (None: the image's own size); see ``measure_sample``.
    """
    ts = np.asarray(thresholds, dtype=np.float64)
    measured = measure_maps(progress(dataset.samples, "measuring maps"), stores, level, ts, max_side)
    return measured.report(level, ts)


def _listed(names: Iterable[str], most: int = 5) -> str:
    names = list(names)
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def require_measured(
    report: LocalisationReport,
    dataset: Dataset,
    stores: Mapping[str, MapStore],
    where: str | Path | None = None,
) -> None:
    """Refuse, in one sentence naming ``where`` (the dataset's file), a report in which no map was measured.

    Such a report holds only empty curves, so nothing should be written from it; the sentence says why nothing
    could be measured: no image has maps, the images with maps have no boxes of the report's level, or their
    boxes are of classes the maps do not know.
    """
    if any(report.counts.get(method, {}).get("maps", 0) for method in report.methods):
        return
    level = report.level
    with_maps = [s for s in dataset.samples if any(store.has(s.id) for store in stores.values())]
    if not with_maps:
        raise BadInputError(
            f"no map could be measured: none of the {len(dataset.samples)} images has stored maps of "
            f"{_listed(stores)}", where,
        )
    box_classes = list(dict.fromkeys(b.figure_class for s in with_maps for b in s.boxes if b.level == level))
    if not box_classes:
        other = "attribute" if level == "figure" else "figure"
        has_other = any(b.level == other for s in with_maps for b in s.boxes)
        hint = f"; they have {other} boxes, so try --level {other}" if has_other else ""
        raise BadInputError(
            f"no map could be measured: none of the {len(with_maps)} images with maps has {level} boxes{hint}",
            where,
        )
    map_classes = list(dict.fromkeys(c for store in stores.values() for c in store.classes))
    known = [c for c in box_classes if c in map_classes]
    if not known:
        raise BadInputError(
            f"no map could be measured: the {level} boxes of the images with maps are of {_listed(box_classes)}, "
            f"and the maps are of {_listed(map_classes)} only", where,
        )
    raise BadInputError(
        f"no map could be measured: the {level} boxes of {_listed(known)} on the images with maps have no area "
        "on the measuring grid", where,
    )
