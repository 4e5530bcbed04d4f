"""Pascal VOC trees and the People-Art layout, built by hand in each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from iconolens.data.collections import detect_format, load_collection
from iconolens.data.records import Box
from iconolens.data.voc import read_voc
from iconolens.errors import BadAnnotationError, BadInputError


def voc_xml(width: int, height: int, objects: list[tuple[str, int, int, int, int, int]]) -> str:
    """VOC XML text; each object is (name, xmin, ymin, xmax, ymax, difficult), 1-based inclusive."""
    parts = [f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, xmin, ymin, xmax, ymax, difficult in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin>"
            f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


@pytest.fixture
def peopleart_like(tmp_path: Path, solid_image) -> Path:
    """Two styles, three images; XML only for the two positives, as People-Art publishes it."""
    root = tmp_path / "pa"
    solid_image(root / "JPEGImages" / "Baroque" / "a.jpg", 50, 40)
    solid_image(root / "JPEGImages" / "Baroque" / "b.jpg", 30, 30)
    solid_image(root / "JPEGImages" / "Cubism" / "c.jpg", 20, 10)
    annotations = root / "Annotations"
    (annotations / "Baroque").mkdir(parents=True)
    (annotations / "Cubism").mkdir(parents=True)
    (annotations / "Baroque" / "a.jpg.xml").write_text(
        voc_xml(50, 40, [("person", 1, 1, 50, 40, 0), ("person", 10, 5, 20, 30, 1)])
    )
    (annotations / "Cubism" / "c.jpg.xml").write_text(voc_xml(20, 10, [("person", 3, 2, 4, 3, 0)]))
    (annotations / "person_train.txt").write_text("Baroque/a.jpg 1\nBaroque/b.jpg -1\n")
    (annotations / "person_val.txt").write_text("Cubism/c.jpg 1\n")
    return root


def test_presence_task_reads_lists_boxes_and_splits(peopleart_like: Path) -> None:
    assert detect_format(peopleart_like) == "voc"
    dataset = load_collection(peopleart_like)
    assert dataset.classes == ("person",)
    assert dataset.multi_label
    by_id = {s.id: s for s in dataset.samples}
    a, b, c = by_id["Baroque/a.jpg"], by_id["Baroque/b.jpg"], by_id["Cubism/c.jpg"]
    assert (a.labels, b.labels, c.labels) == (("person",), (), ("person",))
    assert (a.split, b.split, c.split) == ("train", "train", "val")
    # 1-based inclusive (1, 1, 50, 40) covers the whole 50 x 40 image: half-open (0, 0, 50, 40)
    assert a.boxes == (
        Box(0, 0, 50, 40, "person", "figure", False),
        Box(9, 4, 20, 30, "person", "figure", True),
    )
    assert c.boxes[0].xyxy == (2, 1, 4, 3) and c.boxes[0].area == 2 * 2
    assert b.boxes == ()
    assert (c.width, c.height) == (20, 10)


def test_style_task_labels_by_folder(peopleart_like: Path) -> None:
    dataset = read_voc(peopleart_like, task="style")
    assert dataset.classes == ("Baroque", "Cubism")
    assert not dataset.multi_label
    assert sorted((s.id, s.labels) for s in dataset.samples) == [
        ("Baroque/a.jpg", ("Baroque",)),
        ("Baroque/b.jpg", ("Baroque",)),
        ("Cubism/c.jpg", ("Cubism",)),
    ]
    assert sum(len(s.boxes) for s in dataset.samples) == 3  # person boxes kept for localisation


def test_malformed_xml_skips_its_image(peopleart_like: Path) -> None:
    xml = peopleart_like / "Annotations" / "Cubism" / "c.jpg.xml"
    xml.write_text("<annotation><object><name>person</name>")
    dataset = read_voc(peopleart_like)
    assert sorted(s.id for s in dataset.samples) == ["Baroque/a.jpg", "Baroque/b.jpg"]
    (problem,) = dataset.problems
    assert problem.path == str(xml) and "malformed XML" in problem.message


def test_box_outside_and_zero_area_in_xml(peopleart_like: Path) -> None:
    annotations = peopleart_like / "Annotations"
    (annotations / "Cubism" / "c.jpg.xml").write_text(voc_xml(20, 10, [("person", 3, 2, 25, 3, 0)]))
    (annotations / "Baroque" / "a.jpg.xml").write_text(voc_xml(50, 40, [("person", 5, 5, 4, 9, 0)]))
    dataset = read_voc(peopleart_like)
    assert [s.id for s in dataset.samples] == ["Baroque/b.jpg"]
    messages = {Path(p.path).name: p.message for p in dataset.problems}
    assert "outside the 20x10 image" in messages["c.jpg.xml"]
    assert "zero area" in messages["a.jpg.xml"]


def test_positive_without_xml_and_missing_image(peopleart_like: Path) -> None:
    (peopleart_like / "Annotations" / "Cubism" / "c.jpg.xml").unlink()
    (peopleart_like / "JPEGImages" / "Baroque" / "b.jpg").unlink()
    dataset = read_voc(peopleart_like)
    assert [s.id for s in dataset.samples] == ["Baroque/a.jpg"]
    messages = sorted(p.message for p in dataset.problems)
    assert any("annotation file of an image with objects is missing" in m for m in messages)
    assert any("does not exist" in m for m in messages)


def test_size_in_xml_must_match_the_image(peopleart_like: Path) -> None:
    (peopleart_like / "Annotations" / "Cubism" / "c.jpg.xml").write_text(voc_xml(10, 20, []))
    dataset = read_voc(peopleart_like)
    assert "10x20 but the image is 20x10" in dataset.problems[0].message


@pytest.mark.parametrize(
    ("listing", "words"),
    [
        ("Baroque/a.jpg yes\n", "line 1 should read"),
        ("Baroque/a.jpg 1\nBaroque/a.jpg 1\n", "listed twice"),
    ],
)
def test_malformed_split_list_is_an_error(peopleart_like: Path, listing: str, words: str) -> None:
    path = peopleart_like / "Annotations" / "person_train.txt"
    path.write_text(listing)
    with pytest.raises(BadAnnotationError) as error:
        read_voc(peopleart_like)
    assert str(error.value).startswith(str(path)) and words in str(error.value)


def test_image_in_two_splits_is_an_error(peopleart_like: Path) -> None:
    (peopleart_like / "Annotations" / "person_val.txt").write_text("Baroque/a.jpg 1\n")
    with pytest.raises(BadAnnotationError) as error:
        read_voc(peopleart_like)
    assert "listed in both train and val" in str(error.value)


def test_plain_voc_tree_with_image_sets(tmp_path: Path, solid_image) -> None:
    root = tmp_path / "voc"
    solid_image(root / "JPEGImages" / "0001.jpg", 40, 30)
    solid_image(root / "JPEGImages" / "0002.jpg", 40, 30)
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "0001.xml").write_text(
        voc_xml(40, 30, [("horse", 1, 1, 10, 10, 0), ("person", 2, 2, 5, 5, 0)]).replace(
            "<size>", "<filename>0001.jpg</filename><size>"
        )
    )
    (root / "Annotations" / "0002.xml").write_text(voc_xml(40, 30, [("person", 1, 1, 40, 30, 0)]))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("0002\n")
    dataset = load_collection(root)
    assert dataset.classes == ("horse", "person")
    by_id = {s.id: s for s in dataset.samples}
    assert by_id["0001"].labels == ("horse", "person")
    assert by_id["0002"].labels == ("person",)
    assert (by_id["0001"].split, by_id["0002"].split) == (None, "val")
    assert by_id["0002"].boxes[0].xyxy == (0, 0, 40, 30)


def test_style_task_needs_style_folders(tmp_path: Path, solid_image) -> None:
    root = tmp_path / "voc"
    solid_image(root / "JPEGImages" / "0001.jpg", 40, 30)
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "0001.xml").write_text(voc_xml(40, 30, []))
    with pytest.raises(BadInputError) as error:
        read_voc(root, task="style")
    assert "one folder per style" in str(error.value)
