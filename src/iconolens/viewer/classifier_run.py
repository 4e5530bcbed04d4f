"""A classifier run as viewer records: every image with maps, its probabilities, outcome, boxes and measures.

Per-image measures are the run's localisation measures (component IoU, global IoU, box coverage, irrelevant
attention) of each method against the image's expert boxes, at the threshold where that method scored best
over the whole run (``localisation_*_peaks.csv`` from ``iconolens evaluate``), else at the level's default
threshold; an image's value is the mean over its labelled classes. They are the costly part of a build, so
they are kept in a cache file beside the site and reused while an image's map file, boxes and thresholds stay
the same.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from iconolens.data.dataset_json import load_dataset_json
from iconolens.data.records import Dataset, Sample
from iconolens.errors import BadInputError, IconolensError
from iconolens.evaluate.boxes import DEFAULT_THRESHOLD
from iconolens.evaluate.declarations import LOCALISATION_METRICS
from iconolens.evaluate.localisation import measure_sample
from iconolens.explain.store import MapStore
from iconolens.models.checkpoint import read_meta
from iconolens.models.meta import ModelMeta
from iconolens.run import RunDirectory
from iconolens.viewer.content import BoxRow, MapSet, Measure, ViewerHeader, ViewerImage

LEVELS = ("attribute", "figure")


def _stores(run: RunDirectory, notes: list[str]) -> dict[str, MapStore]:
    stores: dict[str, MapStore] = {}
    if not run.maps_root.is_dir():
        return stores
    for meta in sorted(run.maps_root.glob("*/meta.json")):
        store = MapStore(meta.parent)
        try:
            store.meta()
        except IconolensError as exc:
            notes.append(f"maps of {meta.parent.name} left out: {exc}")
            continue
        stores[meta.parent.name] = store
    return stores


def _model_meta(run: RunDirectory, notes: list[str]) -> ModelMeta | None:
    if not run.model_dir.exists():
        return None
    try:
        return read_meta(run.model_dir)
    except IconolensError as exc:
        notes.append(f"predictions left out: {exc}")
        return None


def _peak_thresholds(run: RunDirectory, level: str) -> dict[tuple[str, str], float]:
    """(method, metric) -> the threshold at which the method scored best, from the run's peaks tables."""
    found: dict[tuple[str, str], float] = {}
    for path in sorted(run.metrics_dir.glob(f"localisation_{level}*_peaks.csv")):
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    try:
                        found.setdefault((row["method"], row["metric"]), float(row["at_threshold"]))
                    except (KeyError, TypeError, ValueError):
                        continue
        except (OSError, UnicodeDecodeError):
            continue
    return found


def _stored_boxes(run: RunDirectory, dataset: Dataset, notes: list[str]) -> dict[str, dict[str, list[BoxRow]]]:
    """Boxes derived from maps that the run holds (RUN/boxes/*_detections.json), by name and image."""
    out: dict[str, dict[str, list[BoxRow]]] = {}
    if not run.boxes_dir.is_dir():
        return out
    for path in sorted(run.boxes_dir.glob("*_detections.json")):
        name = path.name[: -len("_detections.json")].replace("_", " ")
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
            by_image: dict[str, list[BoxRow]] = {}
            for entry in entries:
                x, y, w, h = (float(v) for v in entry["bbox"])
                label = dataset.classes[int(entry["category_id"]) - 1]
                by_image.setdefault(str(entry["sample_id"]), []).append(
                    (x, y, x + w, y + h, label, round(float(entry["score"]), 4)))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
            notes.append(f"derived boxes left out: {path} is not a list of detections of this run's classes")
            continue
        out[name] = by_image
    return out


def _predictions(meta: ModelMeta | None, classes: Sequence[str], scores: np.ndarray) -> tuple[str, ...]:
    if meta is None or not len(scores):
        return ()
    if meta.task == "multilabel":
        thresholds = meta.thresholds or (0.5,) * len(classes)
        return tuple(c for c, p, t in zip(classes, scores, thresholds) if p >= t)
    return (classes[int(np.argmax(scores))],)


def _outcome(labels: Sequence[str], predicted: Sequence[str], have_predictions: bool) -> frozenset[str]:
    if not have_predictions:
        return frozenset()
    wrong = any(p not in labels for p in predicted)
    missed = any(label not in predicted for label in labels)
    flags = {"wrong"} if wrong else set()
    if missed:
        flags.add("missed")
    return frozenset(flags or {"correct"})


class ClassifierRunContent:
    """Reads a classifier run once (dataset, stores, model metadata, thresholds) and yields its images."""

    def __init__(self, run_root: str | Path, split: str | None = None, cache: Path | None = None) -> None:
        self.run = RunDirectory(run_root)
        self.cache_path = cache
        self.cache: dict[str, dict] = {}
        self.used: set[str] = set()
        if cache is not None and cache.is_file():
            try:
                loaded = json.loads(cache.read_text(encoding="utf-8"))
                self.cache = loaded if isinstance(loaded, dict) else {}
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                self.cache = {}  # a damaged cache only costs the time to measure again
        if not self.run.dataset_json.is_file():
            raise BadInputError("not a run folder: dataset.json is missing (make one with `iconolens data split`)",
                                self.run.root)
        self.notes: list[str] = []
        dataset = load_dataset_json(self.run.dataset_json)
        self.dataset = dataset.subset(split) if split else dataset
        self.stores = _stores(self.run, self.notes)
        self.meta = _model_meta(self.run, self.notes)
        self.classes: tuple[str, ...] = tuple(self.meta.classes) if self.meta else tuple(self.dataset.classes)
        for store in self.stores.values():
            if tuple(store.classes) != self.classes:
                self.classes = tuple(store.classes)  # maps speak for the model that made them
                break
        self.levels = tuple(lv for lv in LEVELS if any(b.level == lv for s in self.dataset.samples for b in s.boxes))
        self.peaks = {level: _peak_thresholds(self.run, level) for level in self.levels}
        self.boxes = _stored_boxes(self.run, self.dataset, self.notes)
        self.measures = tuple(self._measure_declarations())

    def _threshold(self, method: str, metric: str, level: str) -> float:
        return self.peaks[level].get((method, metric), DEFAULT_THRESHOLD[level])

    def _measure_declarations(self) -> Iterator[Measure]:
        for method in self.stores:
            for level in self.levels:
                for metric in LOCALISATION_METRICS:
                    t = self._threshold(method, metric.key, level)
                    yield Measure(f"{method}:{level}:{metric.key}",
                                  f"{method}: {metric.title} against {level} boxes (threshold {t:.2f})",
                                  metric.higher_is_better)

    def header(self, title: str) -> ViewerHeader:
        return ViewerHeader(title=title, kind="classifier", classes=self.classes, methods=tuple(self.stores),
                            measures=self.measures, levels=self.levels or ("figure",), notes=tuple(self.notes))

    def samples(self) -> list[Sample]:
        """The images to show: those with maps of some method, or every image when the run has no maps."""
        if not self.stores:
            return list(self.dataset.samples)
        return [s for s in self.dataset.samples if any(store.has(s.id) for store in self.stores.values())]

    def image(self, sample: Sample, width: int, height: int) -> ViewerImage:
        """The record of one image whose pixels are ``width`` x ``height``."""
        maps: dict[str, MapSet] = {}
        scores = np.zeros(0)
        measures: dict[str, float] = {}
        per_target: dict[str, dict[str, float]] = {}
        for method, store in self.stores.items():
            if not store.has(sample.id):
                continue
            try:
                raw, method_scores = store.read(sample.id)
            except IconolensError as exc:
                self.notes.append(str(exc))
                continue
            maps[method] = MapSet(tuple(store.classes), raw)
            if not len(scores):
                scores = method_scores
            self._cached_measure(sample, method, store, raw, (height, width), measures, per_target)
        predicted = _predictions(self.meta, self.classes, scores)
        expert = tuple((*b.xyxy, b.label, b.level, b.figure_class) for b in sample.boxes)
        stored = {name: tuple(by_image.get(sample.id, ())) for name, by_image in self.boxes.items()
                  if sample.id in by_image}
        return ViewerImage(
            id=sample.id, path=sample.path, width=width, height=height, split=sample.split, labels=sample.labels,
            probabilities=tuple(float(p) for p in scores), predicted=predicted,
            outcome=_outcome(sample.labels, predicted, self.meta is not None and len(scores) > 0),
            expert_boxes=expert, stored_boxes=stored, maps=maps, measures=measures, target_measures=per_target,
        )

    def save_cache(self) -> None:
        """Write the measures of this build for the next one."""
        if self.cache_path is not None:
            from iconolens.atomic import write_json_atomically

            write_json_atomically(self.cache_path, {k: v for k, v in self.cache.items() if k in self.used})

    def _cached_measure(self, sample: Sample, method: str, store: MapStore, raw: np.ndarray, size: tuple[int, int],
                        measures: dict[str, float], per_target: dict[str, dict[str, float]]) -> None:
        """``_measure``, or its result from the cache when nothing it depends on has changed."""
        stat = store.path_for(sample.id).stat()
        thresholds = {lv: [self._threshold(method, m.key, lv) for m in LOCALISATION_METRICS] for lv in self.levels}
        state = json.dumps([stat.st_size, stat.st_mtime_ns, list(size), thresholds, list(store.classes),
                            [[*b.xyxy, b.label, b.level] for b in sample.boxes], list(sample.labels)])
        signature = hashlib.sha1(state.encode("utf-8")).hexdigest()
        key = f"{method}\0{sample.id}"
        self.used.add(key)
        entry = self.cache.get(key)
        if not (isinstance(entry, dict) and entry.get("signature") == signature):
            own: dict[str, float] = {}
            own_targets: dict[str, dict[str, float]] = {}
            self._measure(sample, method, store.classes, raw, size, own, own_targets)
            entry = {"signature": signature, "measures": own, "targets": own_targets}
            self.cache[key] = entry
        measures.update(entry["measures"])
        for target, values in entry["targets"].items():
            per_target.setdefault(target, {}).update(values)

    def _measure(self, sample: Sample, method: str, classes: Sequence[str], raw: np.ndarray,
                 size: tuple[int, int], measures: dict[str, float], per_target: dict[str, dict[str, float]]) -> None:
        for level in self.levels:
            wanted = {m.key: self._threshold(method, m.key, level) for m in LOCALISATION_METRICS}
            thresholds = np.array(sorted(set(wanted.values())), dtype=np.float64)
            try:
                results, _ = measure_sample(sample, raw, classes, level, thresholds=thresholds, size=size)
            except (ValueError, IconolensError):
                continue
            if not results:
                continue
            for metric in LOCALISATION_METRICS:
                k = int(np.searchsorted(thresholds, wanted[metric.key]))
                values = []
                for cls, _, result in results:
                    value = {
                        "component_iou": float(result.component_iou[:, k].mean()),
                        "global_iou": float(result.global_iou[k]),
                        "box_coverage": float(result.covered[:, k].mean()),
                        "irrelevant_attention": float(result.irrelevant_attention[k]),
                    }[metric.key]
                    if value == value:  # NaN: an empty foreground has no irrelevant share
                        per_target.setdefault(cls, {})[f"{method}:{level}:{metric.key}"] = round(value, 4)
                        values.append(value)
                if values:
                    measures[f"{method}:{level}:{metric.key}"] = round(float(np.mean(values)), 4)
