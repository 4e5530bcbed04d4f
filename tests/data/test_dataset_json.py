"""The run's dataset.json: an exact round trip, absolute paths, and one-sentence errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from iconolens.data.collections import detect_format, load_collection
from iconolens.data.dataset_json import load_dataset_json, save_dataset_json
from iconolens.data.records import Box, Dataset, Problem, Sample
from iconolens.errors import BadAnnotationError, BadInputError


def _dataset(root: Path) -> Dataset:
    samples = (
        Sample(
            id="Peter/a.png",
            path=root / "Peter" / "a.png",
            labels=("Peter", "Paul"),
            boxes=(Box(0.5, 1, 10, 20.25, "Peter"), Box(2, 2, 4, 4, "keys - Peter", "attribute", True)),
            width=30,
            height=40,
            split="train",
        ),
        Sample(id="b", path=root / "b.png", labels=(), split=None),
    )
    return Dataset(
        samples=samples,
        classes=("Peter", "Paul"),
        multi_label=True,
        root=root,
        problems=(Problem(str(root / "c.png"), "image file is empty"),),
    )


def test_round_trip_is_exact(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path)
    path = save_dataset_json(dataset, tmp_path / "run" / "dataset.json")
    assert load_dataset_json(path) == dataset


def test_paths_are_stored_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    dataset = _dataset(Path("relative"))
    path = save_dataset_json(dataset, tmp_path / "dataset.json")
    stored = json.loads(path.read_text())["samples"][0]["path"]
    assert os.path.isabs(stored) and stored == str(tmp_path / "relative" / "Peter" / "a.png")


def test_run_directory_and_file_are_detected(tmp_path: Path) -> None:
    save_dataset_json(_dataset(tmp_path), tmp_path / "run" / "dataset.json")
    assert detect_format(tmp_path / "run") == "dataset"
    assert detect_format(tmp_path / "run" / "dataset.json") == "dataset"
    assert load_collection(tmp_path / "run").classes == ("Peter", "Paul")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"format": "iconolens-dataset", ', "malformed JSON at line 1"),
        ('{"format": "something-else"}', "not an iconolens dataset file"),
        ('{"format": "iconolens-dataset", "version": 1, "classes": []}', "dataset file is damaged"),
        (
            '{"format": "iconolens-dataset", "version": 1, "classes": [], "multi_label": false, "samples": '
            '[{"id": "a", "path": "/a", "labels": []}, {"id": "a", "path": "/b", "labels": []}]}',
            "sample id 'a' is used twice",
        ),
        ("", "is empty"),
    ],
)
def test_damaged_dataset_file(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "dataset.json"
    path.write_text(text)
    with pytest.raises(BadAnnotationError) as error:
        load_dataset_json(path)
    assert str(error.value).startswith(str(path)) and words in str(error.value)


def test_missing_dataset_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as error:
        load_dataset_json(tmp_path / "dataset.json")
    assert "does not exist" in str(error.value)


def test_canvas_of_a_sample_round_trips_and_scales_boxes(tmp_path):
    from iconolens.data.dataset_json import load_dataset_json, save_dataset_json
    from iconolens.data.records import Canvas, Dataset, Sample

    canvas = Canvas("https://museum.example/iiif/canvas/7", 4000, 3000, "https://museum.example/iiif/manifest")
    samples = (
        Sample("c7", tmp_path / "c7.jpg", ("Peter",), width=1000, height=750, canvas=canvas),
        Sample("plain", tmp_path / "p.jpg", ("Paul",), width=10, height=10),
    )
    path = save_dataset_json(Dataset(samples, ("Peter", "Paul")), tmp_path / "dataset.json")
    loaded = load_dataset_json(path)
    assert loaded.samples[0].canvas == canvas and loaded.samples[1].canvas is None
    assert loaded.samples[0].canvas_scale() == (4.0, 4.0)
    assert loaded.samples[1].canvas_scale() is None
