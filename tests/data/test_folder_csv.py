"""Folder-per-class and CSV collections, including files that must be skipped and listed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iconolens.data.collections import detect_format, load_collection
from iconolens.data.csv_labels import read_csv
from iconolens.data.folder import read_folder
from iconolens.errors import BadAnnotationError, BadInputError


def test_folder_per_class(tmp_path: Path, solid_image) -> None:
    solid_image(tmp_path / "Peter" / "a.png", 30, 20)
    solid_image(tmp_path / "Peter" / "b.jpg", 10, 40)
    solid_image(tmp_path / "Jerome" / "sub" / "c.png", 5, 6)
    dataset = read_folder(tmp_path)
    assert dataset.classes == ("Jerome", "Peter")
    assert not dataset.multi_label
    by_id = {s.id: s for s in dataset.samples}
    assert set(by_id) == {"Peter/a.png", "Peter/b.jpg", "Jerome/sub/c.png"}
    assert by_id["Peter/b.jpg"].labels == ("Peter",)
    assert (by_id["Peter/b.jpg"].width, by_id["Peter/b.jpg"].height) == (10, 40)
    assert by_id["Jerome/sub/c.png"].path == (tmp_path / "Jerome" / "sub" / "c.png").resolve()
    assert dataset.problems == ()


def test_hidden_files_and_folders_are_ignored(tmp_path: Path, solid_image) -> None:
    solid_image(tmp_path / "Peter" / "a.png", 4, 4)
    solid_image(tmp_path / "Peter" / ".thumbnails" / "a.png", 2, 2)
    (tmp_path / "Peter" / ".DS_Store").write_bytes(b"\x00\x01")
    solid_image(tmp_path / ".cache" / "b.png", 2, 2)
    dataset = read_folder(tmp_path)
    assert [s.id for s in dataset.samples] == ["Peter/a.png"]
    assert dataset.classes == ("Peter",) and dataset.problems == ()


def test_folder_with_some_bad_files_loads_and_lists_them(tmp_path: Path, solid_image, jpeg_bytes) -> None:
    solid_image(tmp_path / "Paul" / "fine.png", 8, 8)
    (tmp_path / "Paul" / "empty.jpg").write_bytes(b"")
    (tmp_path / "Paul" / "cut.jpg").write_bytes(jpeg_bytes(20, 20)[:-200])
    (tmp_path / "Paul" / "text.png").write_text("not a picture")
    (tmp_path / "Paul" / "notes.txt").write_text("catalogue notes")
    solid_image(tmp_path / "Paul" / "huge.png", 30, 30)
    dataset = load_collection(tmp_path, max_pixels=500)
    assert [s.id for s in dataset.samples] == ["Paul/fine.png"]
    listed = {Path(p.path).name: p.message for p in dataset.problems}
    assert set(listed) == {"empty.jpg", "cut.jpg", "text.png", "notes.txt", "huge.png"}
    assert "empty" in listed["empty.jpg"]
    assert "truncated" in listed["cut.jpg"]
    assert "not an image" in listed["text.png"]
    assert "900 pixels" in listed["huge.png"]


def test_decoding_finds_damage_inside_pixel_data(tmp_path: Path, write_image) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    write_image(tmp_path / "A" / "ok.png", noise)
    good = write_image(tmp_path / "A" / "bad.png", noise).read_bytes()
    start = good.find(b"IDAT") + 20
    (tmp_path / "A" / "bad.png").write_bytes(good[:start] + bytes(40) + good[start + 40 :])
    assert len(load_collection(tmp_path).samples) == 2  # headers and end markers look fine
    decoded = load_collection(tmp_path, decode=True)
    assert [s.id for s in decoded.samples] == ["A/ok.png"]
    assert Path(decoded.problems[0].path).name == "bad.png"


def test_collection_with_nothing_usable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "x.jpg").write_bytes(b"")
    with pytest.raises(BadInputError) as error:
        load_collection(tmp_path)
    assert "no usable images" in str(error.value)
    assert "x.jpg" in str(error.value)


def test_csv_multi_label_with_header_and_relative_paths(tmp_path: Path, solid_image) -> None:
    solid_image(tmp_path / "img" / "a.png", 4, 3)
    solid_image(tmp_path / "img" / "b.png", 4, 3)
    solid_image(tmp_path / "img" / "c, with comma.png", 4, 3)
    csv = tmp_path / "labels.csv"
    csv.write_text('path,labels\nimg/a.png,Peter;Paul\nimg/b.png, Paul \n"img/c, with comma.png",\n')
    dataset = load_collection(csv)
    assert detect_format(csv) == "csv"
    assert dataset.multi_label
    assert dataset.classes == ("Paul", "Peter")
    assert [s.labels for s in dataset.samples] == [("Peter", "Paul"), ("Paul",), ()]
    assert dataset.samples[2].path == (tmp_path / "img" / "c, with comma.png").resolve()


def test_csv_with_one_label_per_row_is_single_label(tmp_path: Path, solid_image) -> None:
    solid_image(tmp_path / "a.png", 4, 3)
    solid_image(tmp_path / "b.png", 4, 3)
    csv = tmp_path / "l.csv"
    csv.write_text("a.png,Peter\nb.png,Paul\n")
    dataset = read_csv(csv)
    assert not dataset.multi_label
    assert [s.labels for s in dataset.samples] == [("Peter",), ("Paul",)]


def test_csv_missing_image_is_listed_with_its_line(tmp_path: Path, solid_image) -> None:
    solid_image(tmp_path / "a.png", 4, 3)
    csv = tmp_path / "l.csv"
    csv.write_text("a.png,Peter\nghost.png,Paul\n")
    dataset = read_csv(csv)
    assert [s.id for s in dataset.samples] == ["a.png"]
    (problem,) = dataset.problems
    assert problem.path.endswith("ghost.png")
    assert "does not exist" in problem.message and "line 2" in problem.message
    assert dataset.classes == ("Peter",)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a.png,Peter,extra\n", "line 1 has 3 fields"),
        ('a.png,"Peter\n', "malformed CSV"),
        ("a.png,Peter\na.png,Paul\n", "listed twice (lines 1 and 2)"),
        (",Peter\n", "empty path"),
        ("path,labels\n", "lists no images"),
    ],
)
def test_malformed_csv_is_one_sentence(tmp_path: Path, solid_image, text: str, words: str) -> None:
    solid_image(tmp_path / "a.png", 4, 3)
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    with pytest.raises(BadAnnotationError) as error:
        read_csv(csv)
    assert str(error.value).startswith(str(csv))
    assert words in str(error.value)


def test_csv_that_is_not_text(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(BadAnnotationError) as error:
        read_csv(csv)
    assert "not UTF-8" in str(error.value)
