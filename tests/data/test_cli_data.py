"""``iconolens data ...`` end to end: outputs on good input, one line and exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from typer.testing import CliRunner

from iconolens.cli import app, main
from iconolens.data.dataset_json import load_dataset_json

runner = CliRunner()


@pytest.fixture
def folder_collection(tmp_path: Path, solid_image) -> Path:
    root = tmp_path / "collection"
    for cls, n in (("Peter", 10), ("Paul", 10)):
        for i in range(n):
            solid_image(root / cls / f"{i}.png", 8 + i, 6)
    return root


def _iconolens(*args: str) -> subprocess.CompletedProcess:
    """The real program in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "iconolens", *args], capture_output=True, text=True, timeout=120
    )


def _main(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """The program's entry point in this process (faster): exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["iconolens", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def test_stats_writes_json(folder_collection: Path, tmp_path: Path) -> None:
    out = tmp_path / "stats.json"
    result = runner.invoke(app, ["data", "stats", str(folder_collection), "--json", str(out)])
    assert result.exit_code == 0, result.output
    stats = json.loads(out.read_text())
    assert stats["images"] == 20
    assert stats["class_images"] == {"Paul": 10, "Peter": 10}
    assert "Class distribution" in result.output


def test_split_writes_the_run_dataset(folder_collection: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, ["data", "split", str(folder_collection), "--out", str(run), "--seed", "3"])
    assert result.exit_code == 0, result.output
    dataset = load_dataset_json(run / "dataset.json")
    splits = [s.split for s in dataset.samples]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (16, 2, 2)
    assert "dataset written to" in result.output


def test_split_reports_dropped_classes(folder_collection: Path, tmp_path: Path, solid_image) -> None:
    solid_image(folder_collection / "Rare" / "only.png", 5, 5)
    result = runner.invoke(app, ["data", "split", str(folder_collection), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "Rare" in result.output and "dropped 1 class" in result.output
    assert load_dataset_json(tmp_path / "run" / "dataset.json").classes == ("Paul", "Peter")


def test_convert_writes_coco_that_pycocotools_reads(folder_collection: Path, tmp_path: Path) -> None:
    out = tmp_path / "coco.json"
    result = runner.invoke(app, ["data", "convert", str(folder_collection), "--out", str(out)])
    assert result.exit_code == 0, result.output
    coco = COCO(str(out))
    assert len(coco.getImgIds()) == 20
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"Peter", "Paul"}


def test_filter_attributes_rewrites_a_run_in_place(tmp_path: Path, solid_image) -> None:
    solid_image(tmp_path / "a.png", 20, 20)
    solid_image(tmp_path / "b.png", 20, 20)
    document = {
        "images": [{"id": 1, "file_name": "a.png", "labels": ["Peter"]}, {"id": 2, "file_name": "b.png", "labels": ["Peter"]}],
        "categories": [{"id": 1, "name": "keys - Peter"}, {"id": 2, "name": "book - Peter"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 4]},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [1, 1, 4, 4]},
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(document))
    run = tmp_path / "run"
    result = runner.invoke(app, ["data", "filter-attributes", str(tmp_path / "c.json"), "--out", str(run)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "filter-attributes", str(run), "--min-fraction", "0.75"])
    assert result.exit_code == 0, result.output
    kept = {b.label for s in load_dataset_json(run / "dataset.json").samples for b in s.boxes}
    assert kept == {"keys - Peter"}  # book is in 1 of 2 Peter images: 50% < 75%


def test_synth_writes_a_collection_that_loads(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--images", "3", "--seed", "1", "--size", "128"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "stats", str(out), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s.json").read_text())["images"] == 3


def test_nothing_usable_exits_2_with_one_line_and_the_list(tmp_path: Path) -> None:
    (tmp_path / "c" / "Peter").mkdir(parents=True)
    (tmp_path / "c" / "Peter" / "x.jpg").write_bytes(b"")
    (tmp_path / "c" / "Peter" / "y.png").write_text("words")
    result = _iconolens("data", "stats", str(tmp_path / "c"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no usable images" in errors[0] and str(tmp_path / "c") in errors[0]
    assert "x.jpg: image file is empty" in result.stderr  # the skipped files are listed too
    assert "y.png: not an image file" in result.stderr


def test_malformed_json_exits_2_with_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"images": [}')
    code, err = _main(capsys, monkeypatch, "data", "convert", str(path), "--out", str(tmp_path / "o.json"))
    assert code == 2
    assert err.strip().startswith("error:") and "malformed JSON" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.json").exists()


def test_failed_split_keeps_the_previous_dataset(folder_collection: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    run = tmp_path / "run"
    assert runner.invoke(app, ["data", "split", str(folder_collection), "--out", str(run)]).exit_code == 0
    before = (run / "dataset.json").read_bytes()
    code, err = _main(capsys, monkeypatch, "data", "split", str(tmp_path / "absent"), "--out", str(run))
    assert code == 2 and "collection does not exist" in err
    assert (run / "dataset.json").read_bytes() == before


def test_split_of_one_class_says_a_classifier_needs_two(tmp_path: Path, solid_image, capsys, monkeypatch) -> None:
    for i in range(4):
        solid_image(tmp_path / "collection" / "Peter" / f"{i}.png", 8 + i, 6)
    code, err = _main(capsys, monkeypatch, "data", "split", str(tmp_path / "collection"), "--out", str(tmp_path / "r"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{tmp_path / 'collection'}: every image is of the one class 'Peter'" in err
    assert "a classifier needs at least two classes" in err and "frequent enough" not in err
    assert "for a presence task (Peter or not), images without Peter as negatives with no label" in err
    assert not (tmp_path / "r" / "dataset.json").exists()


def test_split_of_one_class_with_too_few_positives_says_it_is_too_rare(
    tmp_path: Path, solid_image, capsys, monkeypatch
) -> None:
    # A presence task (one class and negatives) can be classified; here the one positive cannot be in every split.
    rows = ["path,labels", "p0.png,person"] + [f"n{i}.png," for i in range(5)]
    for name in ("p0.png", *(f"n{i}.png" for i in range(5))):
        solid_image(tmp_path / name, 8, 6)
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    code, err = _main(capsys, monkeypatch, "data", "split", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "r"))
    assert code == 2 and "no class is frequent enough to appear in every split" in err
    assert "two classes" not in err


def test_filter_attributes_refuses_to_overwrite_a_collection(folder_collection: Path, capsys, monkeypatch) -> None:
    code, err = _main(capsys, monkeypatch, "data", "filter-attributes", str(folder_collection))
    assert code == 2 and "give --out" in err


def test_bad_fractions_exit_2(folder_collection: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    args = ("data", "split", str(folder_collection), "--out", str(tmp_path / "r"), "--fractions", "0.5,0.5")
    code, err = _main(capsys, monkeypatch, *args)
    assert code == 2 and "three numbers" in err
    assert not (tmp_path / "r" / "dataset.json").exists()


@pytest.mark.parametrize("command", ["stats", "split", "filter-attributes", "convert", "synth"])
def test_every_command_explains_itself(command: str) -> None:
    result = runner.invoke(app, ["data", command, "--help"])
    assert result.exit_code == 0
    assert "--max-pixels" in result.output or command == "synth"
    assert "Usage" in result.output


def _coco_with_splits(tmp_path: Path, solid_image, splits: list[str | None]) -> Path:
    images, annotations = [], []
    for i, split in enumerate(splits):
        solid_image(tmp_path / f"{i}.png", 12, 12)
        image = {"id": i + 1, "file_name": f"{i}.png", "width": 12, "height": 12}
        if split is not None:
            image["split"] = split
        images.append(image)
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [1, 1, 5, 5]})
    path = tmp_path / "collection.json"
    categories = [{"id": 1, "name": "Peter"}, {"id": 2, "name": "Paul"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def test_keep_split_writes_the_published_split(tmp_path: Path, solid_image) -> None:
    published = ["train", "train", "val", "test", "train", "val"]
    coco = _coco_with_splits(tmp_path, solid_image, published)
    result = runner.invoke(app, ["data", "split", str(coco), "--out", str(tmp_path / "run"), "--keep-split"])
    assert result.exit_code == 0, result.output
    dataset = load_dataset_json(tmp_path / "run" / "dataset.json")
    assert {s.path.name: s.split for s in dataset.samples} == {f"{i}.png": p for i, p in enumerate(published)}


def test_keep_split_refuses_images_without_one(tmp_path: Path, solid_image, capsys, monkeypatch) -> None:
    coco = _coco_with_splits(tmp_path, solid_image, ["train", None, "val", "test"])
    code, err = _main(capsys, monkeypatch, "data", "split", str(coco), "--out", str(tmp_path / "run"), "--keep-split")
    assert code == 2 and "1 of 4 images have no published split" in err and str(coco) in err
    assert not (tmp_path / "run" / "dataset.json").exists()
