"""COCO JSON: reading figures and attributes, writing files pycocotools reads, and refusing bad annotations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from iconolens.data.coco import read_coco, write_coco
from iconolens.data.collections import load_collection
from iconolens.data.records import Box
from iconolens.errors import BadAnnotationError, BadInputError


@pytest.fixture
def coco_collection(tmp_path: Path, solid_image) -> Path:
    """Two images: one with labels given, one whose labels come from its boxes."""
    solid_image(tmp_path / "images" / "one.png", 100, 80)
    solid_image(tmp_path / "images" / "two.png", 60, 50)
    document = {
        "images": [
            {"id": 10, "file_name": "images/one.png", "width": 100, "height": 80, "labels": ["Peter"]},
            {"id": 11, "file_name": "two.png", "width": 60, "height": 50},  # found under images/
        ],
        "categories": [
            {"id": 1, "name": "Peter"},
            {"id": 2, "name": "keys - Peter"},  # an attribute by its name
            {"id": 3, "name": "Jerome", "level": "figure"},
            {"id": 4, "name": "lion", "level": "attribute"},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 1, "bbox": [10, 5, 30, 60]},
            {"id": 2, "image_id": 10, "category_id": 2, "bbox": [12.5, 6, 5, 4], "difficult": True},
            {"id": 3, "image_id": 11, "category_id": 3, "bbox": [0, 0, 60, 50]},
            {"id": 4, "image_id": 11, "category_id": 2, "bbox": [1, 1, 2, 2]},
        ],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(document))
    return path


def test_read_coco_boxes_levels_and_labels(coco_collection: Path) -> None:
    dataset = read_coco(coco_collection)
    one, two = dataset.samples
    assert one.id == "images/one.png"
    assert one.labels == ("Peter",)
    assert one.boxes == (
        Box(10, 5, 40, 65, "Peter", "figure", False),
        Box(12.5, 6, 17.5, 10, "keys - Peter", "attribute", True),
    )
    assert two.path == (coco_collection.parent / "images" / "two.png").resolve()
    assert two.labels == ("Jerome", "Peter")  # figure classes of its boxes (attribute -> Peter)
    assert dataset.classes == ("Jerome", "Peter")  # labels given on some images: their sorted union
    assert dataset.multi_label  # an image has two labels


def test_classes_from_categories_without_image_labels(tmp_path: Path, solid_image) -> None:
    solid_image(tmp_path / "a.png", 10, 10)
    document = {
        "images": [{"id": 1, "file_name": "a.png"}],
        "categories": [{"id": 5, "name": "Paul"}, {"id": 2, "name": "sword - Catherine"}, {"id": 9, "name": "Peter"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 1, 3, 3]}],
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(document))
    dataset = read_coco(path)
    assert dataset.classes == ("Paul", "Catherine", "Peter")
    assert dataset.samples[0].labels == ("Catherine",)
    assert not dataset.multi_label


def test_written_coco_loads_in_pycocotools_and_round_trips(coco_collection: Path, tmp_path: Path) -> None:
    dataset = read_coco(coco_collection)
    out = tmp_path / "out" / "written.json"
    write_coco(dataset, out)

    coco = COCO(str(out))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert sorted(names.values()) == ["Jerome", "Peter", "keys - Peter"]
    by_file = {img["sample_id"]: img for img in coco.loadImgs(coco.getImgIds())}
    one = by_file["images/one.png"]
    assert (one["width"], one["height"]) == (100, 80)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[one["id"]]))
    assert sorted((names[a["category_id"]], tuple(a["bbox"])) for a in anns) == [
        ("Peter", (10.0, 5.0, 30.0, 60.0)),
        ("keys - Peter", (12.5, 6.0, 5.0, 4.0)),
    ]
    assert sum(a["area"] for a in anns) == 30 * 60 + 5 * 4

    again = read_coco(out)
    assert again.classes == dataset.classes
    assert again.multi_label == dataset.multi_label
    assert again.samples == dataset.samples


def test_load_collection_finds_annotations_json_in_a_folder(coco_collection: Path) -> None:
    assert len(load_collection(coco_collection.parent)) == 2


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def _base(images: list[dict], annotations: list[dict]) -> dict:
    return {"images": images, "categories": [{"id": 1, "name": "Peter"}], "annotations": annotations}


@pytest.mark.parametrize(
    ("document", "words"),
    [
        (
            _base([{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}], []),
            "image id 1 is used twice",
        ),
        (
            _base(
                [{"id": 1, "file_name": "a.png"}],
                [
                    {"id": 7, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]},
                    {"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
                ],
            ),
            "annotation id 7 is used twice",
        ),
        (
            _base([{"id": 1, "file_name": "a.png"}], [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]),
            "refers to image id 2",
        ),
        (_base([{"id": 1, "file_name": "a.png"}], [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0]}]), "bbox"),
        ({"images": []}, "no 'categories' list"),
        (
            _base([{"id": 1, "file_name": "a.png", "sample_id": "x"}, {"id": 2, "file_name": "b.png", "sample_id": "x"}], []),
            "the same sample_id 'x'",
        ),
        ([1, 2], "must hold a JSON object"),
    ],
)
def test_structural_errors_name_the_file(tmp_path: Path, solid_image, document: object, words: str) -> None:
    solid_image(tmp_path / "a.png", 10, 10)
    path = _write(tmp_path / "bad.json", document)
    with pytest.raises(BadAnnotationError) as error:
        read_coco(path)
    message = str(error.value)
    assert message.startswith(str(path)) and words in message and "\n" not in message


def test_malformed_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n  {"id": 1,, "file_name": "a.png"}]}')
    with pytest.raises(BadAnnotationError) as error:
        read_coco(path)
    assert str(error.value).startswith(str(path))
    assert "line 2, column 12" in str(error.value)


def test_missing_coco_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as error:
        read_coco(tmp_path / "nowhere.json")
    assert "does not exist" in str(error.value)


@pytest.mark.parametrize(
    ("annotation", "words"),
    [
        ({"category_id": 99, "bbox": [1, 1, 2, 2]}, "unknown category id 99"),
        ({"category_id": 1, "bbox": [50, 5, 20, 5]}, "outside the 60x40 image"),
        ({"category_id": 1, "bbox": [-3, 5, 10, 5]}, "outside the 60x40 image"),
        ({"category_id": 1, "bbox": [5, 5, 0, 10]}, "zero area"),
        ({"category_id": 1, "bbox": [5, 5, 10, 0]}, "zero area"),
    ],
)
def test_bad_annotation_skips_only_its_image(tmp_path: Path, solid_image, annotation: dict, words: str) -> None:
    solid_image(tmp_path / "good.png", 60, 40)
    solid_image(tmp_path / "bad.png", 60, 40)
    document = _base(
        [{"id": 1, "file_name": "good.png"}, {"id": 2, "file_name": "bad.png"}],
        [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 60, 40]},
            {"id": 2, "image_id": 2, **annotation},
        ],
    )
    path = _write(tmp_path / "a.json", document)
    dataset = read_coco(path)
    assert [s.id for s in dataset.samples] == ["good.png"]
    (problem,) = dataset.problems
    assert problem.path.endswith("bad.png")
    assert words in problem.message


def test_box_a_fraction_past_the_border_is_clipped(tmp_path: Path, solid_image) -> None:
    solid_image(tmp_path / "a.png", 60, 40)
    path = _write(
        tmp_path / "a.json",
        _base([{"id": 1, "file_name": "a.png"}], [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [-0.4, 0, 60.7, 40.2]}]),
    )
    (sample,) = read_coco(path).samples
    assert sample.boxes[0].xyxy == (0.0, 0.0, 60.0, 40.0)


def test_missing_image_and_wrong_size_are_listed(tmp_path: Path, solid_image) -> None:
    solid_image(tmp_path / "a.png", 60, 40)
    solid_image(tmp_path / "b.png", 60, 40)
    path = _write(
        tmp_path / "a.json",
        _base(
            [
                {"id": 1, "file_name": "a.png", "width": 60, "height": 40},
                {"id": 2, "file_name": "b.png", "width": 40, "height": 60},
                {"id": 3, "file_name": "gone.png"},
            ],
            [],
        ),
    )
    dataset = read_coco(path)
    assert [s.id for s in dataset.samples] == ["a.png"]
    messages = {Path(p.path).name: p.message for p in dataset.problems}
    assert "40x60 but the image is 60x40" in messages["b.png"]
    assert "does not exist" in messages["gone.png"]
