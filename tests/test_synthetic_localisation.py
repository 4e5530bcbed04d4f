"""End to end on the synthetic collection: maps of a trained classifier find the attributes.

The synthetic saints are recognisable only by their attributes, so a classifier that has learnt them must
look at them: its class activation maps should overlap the attribute boxes far more than a map that knows
nothing (uniform) or a random one does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iconolens.cli import app
from iconolens.data.dataset_json import load_dataset_json
from iconolens.evaluate.localisation import evaluate_localisation
from iconolens.explain.store import MapStore
from iconolens.run import RunDirectory

METHODS = ("cam", "gradcam", "gradcampp")


def _iconolens(*args: str) -> None:
    app(args=list(args), standalone_mode=False, prog_name="iconolens")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic-run")
    collection, run = root / "collection", root / "run"
    _iconolens("data", "synth", "--out", str(collection), "--images", "300", "--seed", "3", "--size", "224")
    _iconolens("data", "split", str(collection / "annotations.json"), "--out", str(run), "--seed", "3")
    _iconolens("train", "--run", str(run), "--backbone", "mobilenet_v2", "--mode", "off-the-shelf",
               "--epochs", "40", "--image-size", "224", "--seed", "3")
    for split in ("val", "test"):
        _iconolens("explain", "--run", str(run), "--methods", ",".join(METHODS), "--split", split)
    return run


def _baseline_store(directory: Path, like: MapStore, sample_ids: list[str], kind: str) -> MapStore:
    """Maps that know nothing about the image: constant, or seeded noise, at the same resolution."""
    rng = np.random.default_rng(11)
    store = MapStore(directory)
    store.initialise(like.classes, kind, {})
    for sample_id in sample_ids:
        maps, scores = like.read(sample_id)
        fake = np.ones_like(maps) if kind == "uniform" else rng.random(maps.shape).astype(np.float32)
        store.write(sample_id, fake, scores)
    return store


def test_cam_methods_localise_attributes_far_better_than_uniform_or_random_maps(
    trained_run: Path, tmp_path: Path
) -> None:
    run = RunDirectory(trained_run)
    everything = load_dataset_json(run.dataset_json)
    held_out = tuple(s for s in everything.samples if s.split in ("val", "test"))
    dataset = everything.with_samples(held_out)
    stores = {m: MapStore(run.maps_dir(m)) for m in METHODS}
    ids = [s.id for s in dataset.samples]
    stores["uniform"] = _baseline_store(tmp_path / "uniform", stores["cam"], ids, "uniform")
    stores["random"] = _baseline_store(tmp_path / "random", stores["cam"], ids, "random")

    report = evaluate_localisation(dataset, stores, level="attribute")

    baselines = ("uniform", "random")
    best_iou = max(report.peak(b, "global_iou")[0] for b in baselines)
    least_irrelevant = min(report.peak(b, "irrelevant_attention")[0] for b in baselines)
    # A uniform map covers the whole image, so its best global IoU is the attribute boxes' share of the image.
    assert 0.0 < best_iou < 0.1
    for method in METHODS:
        assert report.peak(method, "global_iou")[0] > 2.0 * best_iou, method
        assert report.peak(method, "irrelevant_attention")[0] < least_irrelevant - 0.05, method


def test_boxes_snapped_to_segments_find_whole_figures_where_map_boxes_find_parts(trained_run: Path) -> None:
    """The maps light up each saint's attributes; GrabCut seeded with them recovers the figure that holds them."""
    from iconolens.evaluate.boxes import BoxRecipe, derive_boxes
    from iconolens.evaluate.detection import evaluate_derived_boxes
    from iconolens.evaluate.segments import SegmentSeeds

    run = RunDirectory(trained_run)
    everything = load_dataset_json(run.dataset_json)
    dataset = everything.with_samples(tuple(s for s in everything.samples if s.split in ("val", "test")))
    store = MapStore(run.maps_dir("cam"))
    ids = [s.id for s in dataset.samples]
    recall = {}
    for name, recipe in {"one box": BoxRecipe(gate=False), "one box p70": BoxRecipe(gate=False, percentile=70.0),
                         "segments": BoxRecipe(gate=False, segments=SegmentSeeds())}.items():
        derived = derive_boxes(dataset, store, recipe, method=name)
        recall[name] = evaluate_derived_boxes(dataset, derived.boxes, name, image_ids=ids).recall50
    baseline = max(recall["one box"], recall["one box p70"])
    # measured: 0.19 against 0.00 (thesis threshold) and 0.03 (70th percentile) on this collection
    assert recall["segments"] >= max(0.12, 4 * baseline), recall
