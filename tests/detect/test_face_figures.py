"""Figure boxes seeded by faces: the canon's proportions, the class from labels or maps, the fallback (the figure
cut is tested in test_figure_cut.py, so boxes here are the canon's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconolens.data.records import Dataset, Sample
from iconolens.detect.face_figures import FigureProportions, face_figure_boxes, with_fallback
from iconolens.evaluate.boxes import BoxRecipe, DerivedBox, DerivedBoxes
from iconolens.explain.store import MapStore


def test_a_face_becomes_a_figure_seven_and_a_half_heads_tall_and_three_faces_wide_clipped_to_the_image() -> None:
    # Face 20 wide, 30 tall: head 40 tall (a third more), so the figure spans y 10..310 and x 20 +- 30.
    assert FigureProportions().figure_box((10, 20, 30, 50), 200, 400) == (0.0, 10.0, 50.0, 310.0)
    # Near the bottom of a half-length portrait the figure ends at the frame.
    assert FigureProportions().figure_box((90, 100, 110, 130), 200, 200) == (70.0, 90.0, 130.0, 200.0)


def _image(folder: Path, name: str, size: tuple[int, int]) -> Path:
    path = folder / f"{name}.png"
    Image.fromarray(np.zeros((size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_each_face_gives_a_box_of_the_images_label_scored_by_the_face_and_missing_faces_fall_back(
        tmp_path: Path) -> None:
    samples = (Sample("two", _image(tmp_path, "two", (100, 80)), ("person",)),
               Sample("none", _image(tmp_path, "none", (100, 80)), ("person",)),
               Sample("empty", _image(tmp_path, "empty", (100, 80)), ()))
    dataset = Dataset(samples, ("person",))
    asked = []

    def faces(pixels):
        asked.append(tuple(pixels.shape))
        return [(10, 10, 20, 22, 0.99), (60, 10, 70, 22, 0.95)] if len(asked) == 1 else []

    fallback = DerivedBoxes("cam-one-box", BoxRecipe(level="figure", gate=False, percentile=70.0),
                            (DerivedBox("none", "person", 5, 5, 50, 50, 0.4, 0.8),
                             DerivedBox("two", "person", 0, 0, 90, 70, 0.5, 0.9)), ("none", "two"))
    derived = face_figure_boxes(dataset, faces=faces, fallback=fallback, cut=None)
    assert len(asked) == 2  # the unlabelled image is not searched
    by_image = {}
    for b in derived.boxes:
        by_image.setdefault(b.sample_id, []).append(b)
    assert [(b.label, b.score) for b in by_image["two"]] == [("person", 0.99), ("person", 0.95)]
    assert by_image["two"][0].xyxy == FigureProportions().figure_box((10, 10, 20, 22), 100, 80)
    assert [b.xyxy for b in by_image["none"]] == [(5, 5, 50, 50)]  # its fallback box; "two" keeps only faces
    assert sorted(derived.selected) == ["none", "two"] and derived.method == "faces+cam-one-box"
    assert derived.counts["faces"] == 2 and derived.counts["no_face"] == 1


def test_faces_found_on_a_shrunk_copy_are_boxed_in_the_original_pixels(tmp_path: Path) -> None:
    dataset = Dataset((Sample("big", _image(tmp_path, "big", (1280, 960)), ("person",)),), ("person",))
    shapes = []

    def faces(pixels):
        shapes.append(tuple(pixels.shape))
        return [(100, 100, 120, 130, 0.9)]  # in the 640 x 480 copy

    derived = face_figure_boxes(dataset, faces=faces, max_side=640, cut=None)
    assert shapes == [(3, 480, 640)]
    assert derived.boxes[0].xyxy == FigureProportions().figure_box((200, 200, 240, 260), 1280, 960)


def test_with_several_labels_a_figure_takes_the_class_whose_map_is_strongest_inside_it(tmp_path: Path) -> None:
    dataset = Dataset((Sample("pair", _image(tmp_path, "pair", (100, 100)), ("Peter", "Paul")),), ("Peter", "Paul"))
    store = MapStore(tmp_path / "maps")
    store.initialise(["Peter", "Paul"], "cam", {})
    maps = np.zeros((2, 10, 10), dtype=np.float32)
    maps[0, :, :5] = 1.0  # Peter on the left
    maps[1, :, 5:] = 1.0  # Paul on the right
    store.write("pair", maps, np.array([0.9, 0.8], dtype=np.float32))

    def faces(pixels):
        return [(10, 10, 20, 20, 0.99), (80, 10, 90, 20, 0.98)]

    derived = face_figure_boxes(dataset, faces=faces, store=store)
    assert [b.label for b in derived.boxes] == ["Peter", "Paul"]
    # Without maps the class of a figure in a two-label image is unknown: no box, counted.
    unknown = face_figure_boxes(dataset, faces=faces)
    assert unknown.boxes == () and unknown.counts["class_unknown"] == 2


@pytest.mark.skipif(not __import__("importlib").util.find_spec("facenet_pytorch"), reason="facenet-pytorch is absent")
def test_mtcnn_finds_no_face_on_a_blank_canvas() -> None:
    import torch

    from iconolens.detect.face_figures import mtcnn_faces

    assert mtcnn_faces()(torch.full((3, 120, 160), 0.5)) == []


def test_a_face_outside_everything_its_classs_map_points_at_gives_no_figure(tmp_path: Path) -> None:
    dataset = Dataset((Sample("horse", _image(tmp_path, "horse", (100, 100)), ("horse",)),), ("horse",))
    store = MapStore(tmp_path / "maps")
    store.initialise(["horse"], "cam", {})
    maps = np.zeros((1, 10, 10), dtype=np.float32)
    maps[0, 6:, 6:] = 1.0  # the horse, bottom right
    store.write("horse", maps, np.array([0.9], dtype=np.float32))

    def faces(pixels):  # a rider's face over the horse, and a bystander's far from it (top left)
        return [(65, 50, 75, 60, 0.99), (5, 2, 9, 6, 0.98)]

    derived = face_figure_boxes(dataset, faces=faces, store=store, cut=None)
    assert [b.xyxy for b in derived.boxes] == [FigureProportions().figure_box((65, 50, 75, 60), 100, 100)]
    assert derived.counts["outside_the_map"] == 1
    everyone = face_figure_boxes(dataset, faces=faces, store=store, map_percentile=None)
    assert len(everyone.boxes) == 2


def test_the_fallback_fills_each_image_and_class_without_a_face_figure() -> None:
    recipe = BoxRecipe(level="figure", gate=False)
    faces = DerivedBoxes("faces", recipe, (DerivedBox("a", "monk", 1, 1, 5, 9, 0.9, 1.0),), ("a",))
    mapped = DerivedBoxes("cam-one-box", recipe, (
        DerivedBox("a", "monk", 0, 0, 8, 8, 0.5, 1.0),  # the face figure stands for it
        DerivedBox("a", "dog", 2, 2, 6, 6, 0.5, 1.0),  # same image, another class: no face of it
        DerivedBox("b", "monk", 0, 0, 4, 4, 0.5, 1.0),
    ), ("a", "b"))
    every = with_fallback(faces, mapped)
    assert [(b.sample_id, b.label) for b in every.boxes] == [("a", "monk"), ("a", "dog"), ("b", "monk")]
    assert every.selected == ("a", "b") and every.counts["fallback_boxes"] == 2
    dogs = with_fallback(faces, mapped, {"dog"})
    assert [(b.sample_id, b.label) for b in dogs.boxes] == [("a", "monk"), ("a", "dog")] and dogs.selected == ("a",)
