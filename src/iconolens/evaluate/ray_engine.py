"""``iconolens boxes`` and ``iconolens evaluate`` on Ray: consecutive slices of the collection on workers, joined in
order by the driver, which writes the files as in process.

Each worker runs the in-process engine's own per-slice function on its slice and returns what it found, never a
partial average: boxes (:func:`~iconolens.evaluate.boxes.derive_boxes`, joined by
:func:`~iconolens.evaluate.boxes.merge_derived_boxes`), measured maps (:func:`~iconolens.evaluate.localisation.measure_maps`,
joined by ``MeasuredMaps.joined``) and deletion/insertion areas
(:func:`~iconolens.evaluate.faithfulness.faithfulness_areas`, joined by ``FaithfulnessAreas.joined``). The
driver reduces them in image order, so the results equal the in-process engine's on the whole collection.
Deriving boxes and measuring maps need no model, only the maps' files; faithfulness loads the run's model once
per worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iconolens.data.records import Dataset, Level, Sample
from iconolens.evaluate.boxes import BoxRecipe, DerivedBoxes, derive_boxes, merge_derived_boxes
from iconolens.evaluate.faithfulness import FaithfulnessAreas, faithfulness_areas
from iconolens.evaluate.localisation import (
    DEFAULT_MAX_SIDE,
    THRESHOLDS,
    LocalisationReport,
    MeasuredMaps,
    measure_maps,
)
from iconolens.explain.store import MapStore
from iconolens.ray_pool import actor_gpus, import_ray, map_on_actors


class BoxesActor:
    """Derives the boxes of whole slices of a collection from one method's maps."""

    def __init__(self, store: MapStore, recipe: BoxRecipe, method: str | None,
                 gate_stores: Mapping[str, MapStore] | None) -> None:
        self.store, self.recipe, self.method, self.gate_stores = store, recipe, method, gate_stores

    def run(self, part: Dataset) -> DerivedBoxes:
        return derive_boxes(part, self.store, self.recipe, self.method, self.gate_stores)


def derive_boxes_on_ray(
    dataset: Dataset,
    store: MapStore,
    recipe: BoxRecipe,
    method: str | None = None,
    gate_stores: Mapping[str, MapStore] | None = None,
    slice_size: int = 64,
    address: str | None = None,
    workers: int | None = None,
) -> DerivedBoxes:
    """Like :func:`~iconolens.evaluate.boxes.derive_boxes`, with slices of ``slice_size`` images on Ray actors."""
    import_ray()
    samples = dataset.samples
    parts = [dataset.with_samples(samples[i:i + slice_size]) for i in range(0, len(samples), slice_size)]
    if not parts:
        return derive_boxes(dataset, store, recipe, method, gate_stores)
    replies = map_on_actors(BoxesActor, (store, recipe, method, dict(gate_stores or {})), parts,
                            address=address, workers=workers)
    return merge_derived_boxes(replies)


def _slices(samples: Sequence[Sample], size: int) -> list[list[Sample]]:
    return [list(samples[i:i + size]) for i in range(0, len(samples), size)]


class MeasureActor:
    """Measures the stored maps of whole slices of a collection against their boxes."""

    def __init__(self, stores: Mapping[str, MapStore], level: Level, thresholds: np.ndarray,
                 max_side: int | None) -> None:
        self.stores, self.level, self.thresholds, self.max_side = dict(stores), level, thresholds, max_side

    def run(self, samples: list[Sample]) -> MeasuredMaps:
        return measure_maps(samples, self.stores, self.level, self.thresholds, self.max_side)


def evaluate_localisation_on_ray(
    dataset: Dataset,
    stores: Mapping[str, MapStore],
    level: Level = "figure",
    thresholds: Sequence[float] | np.ndarray = THRESHOLDS,
    max_side: int | None = DEFAULT_MAX_SIDE,
    slice_size: int = 64,
    address: str | None = None,
    workers: int | None = None,
) -> LocalisationReport:
    """Like :func:`~iconolens.evaluate.localisation.evaluate_localisation`, with slices of ``slice_size`` images
    measured on Ray actors."""
    import_ray()
    ts = np.asarray(thresholds, dtype=np.float64)
    parts = map_on_actors(MeasureActor, (dict(stores), level, ts, max_side), _slices(dataset.samples, slice_size),
                          address=address, workers=workers)
    nothing = MeasuredMaps([], {m: {} for m in stores})  # every method is named, measured or not
    return MeasuredMaps.joined([nothing, *parts]).report(level, ts)


class FaithfulnessActor:
    """Holds the run's model and measures deletion and insertion areas of whole slices of images."""

    def __init__(self, model_dir: str, stores: Mapping[str, MapStore], steps: int, batch_size: int,
                 device: str) -> None:
        from iconolens.device import resolve_device
        from iconolens.inference import network_on
        from iconolens.models.checkpoint import load_checkpoint

        model, self.meta = load_checkpoint(Path(model_dir))
        self.model = network_on(model, resolve_device(device), self.meta.input_size)
        self.stores, self.steps, self.batch_size = dict(stores), steps, batch_size

    def run(self, samples: list[Sample]) -> FaithfulnessAreas:
        return faithfulness_areas(self.model, self.meta, samples, self.stores, self.steps, self.batch_size)


def faithfulness_on_ray(
    model_dir: str | Path,
    samples: Sequence[Sample],
    stores: Mapping[str, MapStore],
    steps: int = 50,
    batch_size: int = 16,
    device: str = "auto",
    slice_size: int = 4,
    address: str | None = None,
    workers: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Mean areas of :func:`~iconolens.evaluate.faithfulness.faithfulness_areas` with the model in ``model_dir``,
    slices of ``slice_size`` images measured on Ray actors (each image costs hundreds of forward passes)."""
    import_ray()
    args = (str(model_dir), dict(stores), steps, batch_size, device)
    parts = map_on_actors(FaithfulnessActor, args, _slices(samples, slice_size), address=address, workers=workers,
                          gpus_per_actor=actor_gpus(device))
    return FaithfulnessAreas.joined([FaithfulnessAreas.empty(stores), *parts]).means()
