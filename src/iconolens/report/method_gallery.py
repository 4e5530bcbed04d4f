"""Every saliency method of a run side by side: a few paintings, one column per method, each map over its painting.

Methods disagree, and a researcher compares them before trusting one; the gallery shows all the methods
stored under ``RUN/maps/`` for the same paintings and the same class (the one the model scores highest on the
first method's stored probabilities), so differences are differences of method. Paintings come from the test
split first, then val, then the rest, among those every method has maps for.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from iconolens.data.images import load_image
from iconolens.data.records import Box
from iconolens.errors import IconolensError
from iconolens.explain.engine import METHODS
from iconolens.explain.normalise import normalise_maps
from iconolens.explain.store import MapStore
from iconolens.report.overlays import heatmap_overlay, write_png
from iconolens.run import RunDirectory

SPLIT_ORDER = ("test", "val", "train")
LABEL_HEIGHT = 18


def stored_methods(run: RunDirectory) -> list[str]:
    """Methods with a map store in the run: the engine's own in its order, then any others by name."""
    root = run.maps_root
    if not root.is_dir():
        return []
    found = {p.name for p in root.iterdir() if (p / "meta.json").is_file()}
    return [m for m in METHODS if m in found] + sorted(found - set(METHODS))


def gallery_images(run: RunDirectory, methods: list[str], count: int) -> list:
    """Up to ``count`` samples with maps in every method, test split first."""
    from iconolens.data.dataset_json import load_dataset_json

    if not run.dataset_json.is_file():
        return []
    stores = [MapStore(run.maps_dir(m)) for m in methods]
    samples = [s for s in load_dataset_json(run.dataset_json).samples if all(store.has(s.id) for store in stores)]
    rank = {split: i for i, split in enumerate(SPLIT_ORDER)}
    samples.sort(key=lambda s: (rank.get(s.split or "", len(rank)), s.id))
    return samples[:count]


def map_tile(image: Image.Image, raw: np.ndarray, side: int, truth_boxes: Iterable[Box] = (),
             derived_boxes: Iterable[Box] = ()) -> Image.Image:
    """One raw ``(h, w)`` map scaled to [0, 1] over its painting, centred on a white ``side`` x ``side`` square;
    boxes are in ``image``'s pixels. Every picture of several maps draws its cells with this, so they agree."""
    heat = normalise_maps(torch.from_numpy(np.asarray(raw, dtype=np.float32))[None, None])[0, 0].numpy()
    tile = heatmap_overlay(image, heat, truth_boxes=truth_boxes, derived_boxes=derived_boxes, max_side=side)
    canvas = Image.new("RGB", (side, side), "white")
    canvas.paste(tile, ((side - tile.width) // 2, (side - tile.height) // 2))
    return canvas


def write_method_gallery(run: RunDirectory, count: int = 4, side: int = 192) -> Path | None:
    """Write ``RUN/maps/gallery.png`` (rows: paintings; columns: the painting, then each method); None if no maps."""
    methods = stored_methods(run)
    samples = gallery_images(run, methods, count) if methods else []
    if not samples:
        return None
    stores = {m: MapStore(run.maps_dir(m)) for m in methods}
    columns = ["painting", *methods]
    sheet = Image.new("RGB", (side * len(columns), LABEL_HEIGHT + (side + LABEL_HEIGHT) * len(samples)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        draw.text((c * side + 4, 3), name, fill="black")
    for r, sample in enumerate(samples):
        top = LABEL_HEIGHT + r * (side + LABEL_HEIGHT)
        try:  # an unreadable painting or map file leaves its row or cell empty, not the whole gallery
            image = load_image(sample.path).convert("RGB")
            maps, scores = stores[methods[0]].read(sample.id)
            classes = stores[methods[0]].classes
        except IconolensError:
            continue
        chosen = classes[int(np.argmax(scores))]
        plain = image.copy()
        plain.thumbnail((side, side))
        sheet.paste(plain, ((side - plain.width) // 2, top + (side - plain.height) // 2))
        for c, method in enumerate(methods, start=1):
            store = stores[method]
            try:
                maps, _ = store.read(sample.id)
                store_classes = store.classes
            except IconolensError:
                continue
            if chosen in store_classes:
                sheet.paste(map_tile(image, maps[store_classes.index(chosen)], side), (c * side, top))
        draw.text((4, top + side + 2), f"{sample.id}: {chosen} ({float(np.max(scores)):.2f})", fill="black")
    return write_png(run.maps_root / "gallery.png", sheet)
