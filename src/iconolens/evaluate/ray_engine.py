"""``iconolens boxes`` on Ray: consecutive slices of the collection derived on workers, merged in order.

Deriving boxes needs no model, only the maps' files, so each worker reads the same stores and runs the same
:func:`~iconolens.evaluate.boxes.derive_boxes` on its slice; :func:`~iconolens.evaluate.boxes.merge_derived_boxes`
then gives exactly what the in-process engine derives on the whole collection (boxes, their order, the images
kept, the counts). Worth it for boxes snapped to segments (GrabCut takes about half a second per painting); the
driver writes the files, as in process.
"""

from __future__ import annotations

from collections.abc import Mapping

from iconolens.data.records import Dataset
from iconolens.evaluate.boxes import BoxRecipe, DerivedBoxes, derive_boxes, merge_derived_boxes
from iconolens.explain.store import MapStore
from iconolens.ray_pool import import_ray, map_on_actors


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
