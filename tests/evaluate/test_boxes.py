"""Boxes derived from hand-made maps, their gate, and the files written for a detector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from iconolens.data.records import Box, Dataset, Sample
from iconolens.evaluate.boxes import (
    BoxRecipe,
    boxes_from_map,
    coco_detections,
    derive_boxes,
    merge_derived_boxes,
    passes_gate,
    pseudo_ground_truth,
    write_derived_boxes,
)
from iconolens.explain.store import MapStore


def test_figure_box_surrounds_the_whole_foreground():
    saliency = np.zeros((20, 30))
    saliency[2:5, 3:6] = 0.9
    saliency[10:12, 20:25] = 0.5
    (box,) = boxes_from_map(saliency, "figure", threshold=0.05)
    assert box.xyxy == (3, 2, 25, 12)  # half-open: one past the last row and column
    assert box.mean_activation == pytest.approx((9 * 0.9 + 10 * 0.5) / 19)


def test_attribute_boxes_one_per_component_weak_ones_dropped():
    saliency = np.zeros((20, 30))
    saliency[2:5, 3:6] = 0.9  # strong
    saliency[10:12, 20:25] = 0.8  # strong
    saliency[15:17, 1:3] = 0.2  # weak: mean of component means = (0.9 + 0.8 + 0.2) / 3 = 0.633; half 0.317
    boxes = boxes_from_map(saliency, "attribute", threshold=0.1)
    assert sorted(b.xyxy for b in boxes) == [(3, 2, 6, 5), (20, 10, 25, 12)]
    kept_all = boxes_from_map(saliency, "attribute", threshold=0.1, drop_weak_components=False)
    assert len(kept_all) == 3
    assert (1, 15, 3, 17) in [b.xyxy for b in kept_all]


def test_empty_foreground_gives_no_box():
    assert boxes_from_map(np.zeros((5, 5)), "figure", threshold=0.05) == []
    assert boxes_from_map(np.zeros((5, 5)), "attribute", threshold=0.1) == []


def test_percentile_threshold_keeps_the_top_share():
    saliency = np.arange(100, dtype=np.float64).reshape(10, 10) / 99  # rows increase downwards
    recipe = BoxRecipe(level="figure", percentile=90)
    (box,) = boxes_from_map(saliency, "figure", recipe.cut(saliency))
    assert box.xyxy == (0, 9, 10, 10)  # the last row holds the top 10% of values (>= 89.1/99)
    with pytest.raises(ValueError):
        BoxRecipe(threshold=0.1, percentile=90)


def test_gate_follows_the_papers_limits():
    saliency = np.zeros((20, 20))
    saliency[0:10, 0:10] = 1.0
    # Figure gate: global IoU at t = 0.05 must exceed 0.24.
    assert passes_gate(saliency, [(0, 0, 10, 10)], "figure")  # IoU 1
    assert passes_gate(saliency, [(0, 0, 20, 20)], "figure")  # IoU 100/400 = 0.25 > 0.24
    assert not passes_gate(saliency, [(0, 0, 20, 20)], "figure", minimum=0.25)  # 0.25 is not > 0.25
    assert not passes_gate(saliency, [(10, 10, 20, 20)], "figure")
    assert not passes_gate(saliency, [], "figure")
    # Attribute gate: mean component IoU at 0.1 must exceed 0.165; box 10x10 vs component 10x10 -> 1.
    assert passes_gate(saliency, [(0, 0, 10, 10)], "attribute")
    # Box 0..10 x 0..1 (10 px) touching the component (100 px): IoU 10/100 = 0.1.
    assert not passes_gate(saliency, [(0, 0, 10, 1)], "attribute")


def _collection(tmp_path: Path):
    from PIL import Image

    for name in ("good", "bad", "none"):
        Image.new("RGB", (32, 32), (120, 80, 40)).save(tmp_path / f"{name}.png")
    classes = ["Peter", "Paul"]
    store = MapStore(tmp_path / "maps" / "gradcam")
    store.initialise(classes, "gradcam", {})
    good = np.zeros((2, 8, 8), dtype=np.float32)
    good[0, 2:6, 2:6] = 1.0  # Peter's map on his box (image is 32x32: the map is upsampled 4x)
    bad = np.zeros((2, 8, 8), dtype=np.float32)
    bad[0, 0:2, 6:8] = 1.0  # Peter's map in a corner away from his box
    store.write("good", good, np.array([0.75, 0.25]))
    store.write("bad", bad, np.array([0.5, 0.5]))
    truth = (Box(8, 8, 24, 24, "Peter"),)
    samples = (
        Sample("good", tmp_path / "good.png", ("Peter",), truth, width=32, height=32),
        Sample("bad", tmp_path / "bad.png", ("Peter",), truth, width=32, height=32),
        Sample("none", tmp_path / "none.png", ("Paul",), (), width=32, height=32),
    )
    return Dataset(samples=samples, classes=tuple(classes)), store


def test_derive_boxes_with_and_without_gate(tmp_path):
    dataset, store = _collection(tmp_path)
    gated = derive_boxes(dataset, store, BoxRecipe(level="figure", gate=True), method="gradcam")
    assert gated.selected == ("good",)
    assert gated.counts["gated_out"] == 1 and gated.counts["missing_maps"] == 1
    (box,) = gated.boxes
    # Bilinear upsampling spreads the 4x4 block a little: the 0.05 foreground is a slightly larger square
    # centred on the truth, and the score is mean activation x probability.
    assert box.x0 < 8 and box.x1 > 24 and box.x0 == box.y0 and box.x1 == box.y1
    assert 16 - box.x0 == box.x1 - 16
    assert box.score == pytest.approx(box.mean_activation * 0.75)
    ungated = derive_boxes(dataset, store, BoxRecipe(level="figure", gate=False), method="gradcam")
    assert set(ungated.selected) == {"good", "bad"}
    # Gate requiring another method too: a store where 'good' fails makes it fail here.
    other = MapStore(tmp_path / "maps" / "cam")
    other.initialise(["Peter", "Paul"], "cam", {})
    flipped = np.zeros((2, 8, 8), dtype=np.float32)
    flipped[0, 6:8, 0:2] = 1.0
    other.write("good", flipped, np.array([0.75, 0.25]))
    both = derive_boxes(dataset, store, BoxRecipe(level="figure"), gate_stores={"cam": other})
    assert both.boxes == ()


def test_written_files_are_coco_that_readers_load(tmp_path):
    from pycocotools.coco import COCO

    from iconolens.data.coco import read_coco

    dataset, store = _collection(tmp_path)
    derived = derive_boxes(dataset, store, BoxRecipe(level="figure", gate=False), method="gradcam")
    detections = coco_detections(derived, dataset)
    assert {d["image_id"] for d in detections} == {1, 2}  # positions of good and bad in the dataset
    assert all(d["category_id"] == 1 for d in detections)
    x, y, w, h = detections[0]["bbox"]
    b = derived.boxes[0]
    assert (x, y, x + w, y + h) == b.xyxy
    pseudo = pseudo_ground_truth(derived, dataset)
    assert [s.id for s in pseudo.samples] == ["good", "bad"]
    paths = write_derived_boxes(derived, dataset, tmp_path / "boxes")
    coco = COCO(str(paths["pseudo_coco"]))
    assert len(coco.getAnnIds()) == 2
    results = coco.loadRes(str(paths["detections"]))
    assert len(results.getAnnIds()) == 2
    doc = json.loads(paths["pseudo_coco"].read_text())
    assert doc["classes"] == ["Peter", "Paul"]
    back = read_coco(paths["pseudo_coco"])
    assert not back.problems
    assert {s.id: [b.xyxy for b in s.boxes] for s in back.samples} == {
        b.sample_id: [b.xyxy] for b in derived.boxes
    }
    assert all(b.label == "Peter" and b.level == "figure" for s in back.samples for b in s.boxes)


def _group_collection(tmp_path: Path):
    """A group scene (two people), a portrait (one person and no dog to be seen); maps at image size."""
    from PIL import Image

    for name in ("group", "portrait"):
        Image.new("RGB", (60, 40), (120, 80, 40)).save(tmp_path / f"{name}.png")
    store = MapStore(tmp_path / "maps" / "gradcam")
    store.initialise(["person", "dog"], "gradcam", {})
    group = np.zeros((2, 40, 60), dtype=np.float32)
    group[0, 5:15, 5:15] = 1.0  # the more salient person
    group[0, 20:30, 40:50] = 0.6  # the other one
    portrait = np.zeros((2, 40, 60), dtype=np.float32)
    portrait[0, 10:30, 20:35] = 0.5  # normalised to 1.0; the dog map stays constant (zeros)
    store.write("group", group, np.array([0.8, 0.1]))
    store.write("portrait", portrait, np.array([0.9, 0.4]))
    samples = (
        Sample("group", tmp_path / "group.png", ("person",), (), width=60, height=40),
        Sample("portrait", tmp_path / "portrait.png", ("person", "dog"), (), width=60, height=40),
    )
    return Dataset(samples=samples, classes=("person", "dog")), store


def test_derive_boxes_finds_every_instance(tmp_path):
    dataset, store = _group_collection(tmp_path)
    recipe = BoxRecipe(level="figure", gate=False, instances=True)
    derived = derive_boxes(dataset, store, recipe, method="gradcam")
    by_image = {sid: [(b.label, b.xyxy) for b in derived.boxes if b.sample_id == sid] for sid in ("group", "portrait")}
    assert by_image == {
        "group": [("person", (5.0, 5.0, 15.0, 15.0)), ("person", (40.0, 20.0, 50.0, 30.0))],  # best first
        "portrait": [("person", (20.0, 10.0, 35.0, 30.0))],
    }
    scores = [b.score for b in derived.boxes]
    stored = float(np.float16(0.6))  # the store keeps maps as float16
    assert scores == pytest.approx([1.0 * 0.8, stored * 0.8, 1.0 * 0.9])
    assert [b.peak_height for b in derived.boxes] == pytest.approx([1.0, stored, 1.0])
    assert derived.counts["boxes"] == 3 and derived.counts["empty_foreground"] == 1  # the dog's blank map
    assert set(derived.selected) == {"group", "portrait"}
    record = recipe.to_json()
    assert record["instances"] is True and record["threshold"] is None
    assert record["instance_parameters"] == {"min_distance": 0.1, "relative_height": 0.3, "region_fraction": 0.2,
                                             "nms_iou": 0.5, "max_instances": 20}
    # The library's default is still one box around the whole foreground.
    one = derive_boxes(dataset, store, BoxRecipe(level="figure", gate=False), method="gradcam")
    assert [b.xyxy for b in one.boxes if b.sample_id == "group"] == [(5.0, 5.0, 50.0, 30.0)]
    assert BoxRecipe().to_json()["instance_parameters"] is None


def test_instance_recipe_refuses_a_threshold():
    from iconolens.errors import BadInputError

    with pytest.raises(BadInputError):
        BoxRecipe(instances=True, threshold=0.1)
    with pytest.raises(BadInputError):
        BoxRecipe(instances=True, nms_iou=1.5)


def test_boxes_of_slices_merge_into_those_of_the_whole(tmp_path):
    dataset, store = _collection(tmp_path)
    for recipe in (BoxRecipe(level="figure", gate=True), BoxRecipe(level="figure", gate=False)):
        whole = derive_boxes(dataset, store, recipe, method="gradcam")
        parts = [derive_boxes(dataset.with_samples(dataset.samples[i:i + 1]), store, recipe, method="gradcam")
                 for i in range(len(dataset.samples))]
        assert merge_derived_boxes(parts) == whole
    # the counts are summed key by key, including a key only one slice has
    first = parts[0].__class__("m", BoxRecipe(), (), (), {"images": 1, "unreadable_images": 2})
    second = parts[0].__class__("m", BoxRecipe(), (), ("x",), {"images": 3})
    merged = merge_derived_boxes([first, second])
    assert merged.counts == {"images": 4, "unreadable_images": 2} and merged.selected == ("x",)


def test_boxes_on_ray_equal_the_in_process_ones(tmp_path):
    ray = pytest.importorskip("ray")
    from iconolens.evaluate.ray_engine import derive_boxes_on_ray

    dataset, store = _group_collection(tmp_path)
    recipe = BoxRecipe(level="figure", gate=False, instances=True)
    expected = derive_boxes(dataset, store, recipe, method="gradcam-instances")
    assert len(expected.boxes) == 3
    if ray.is_initialized():
        ray.shutdown()
    found = derive_boxes_on_ray(dataset, store, recipe, method="gradcam-instances", slice_size=1, workers=2)
    assert found == expected
    assert not ray.is_initialized()  # the local Ray it started is shut down
