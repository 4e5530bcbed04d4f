"""`iconolens train` / `evaluate-classifier` on a run folder, and their one-line refusals."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest

from iconolens.cli import main
from iconolens.data.dataset_json import save_dataset_json


def _run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["iconolens", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_then_evaluate_writes_checkpoint_and_metrics(tiny_squares, tmp_path, monkeypatch, capsys):
    save_dataset_json(tiny_squares, tmp_path / "dataset.json")
    code, out, err = _run_cli(
        monkeypatch, capsys, "train", "--run", str(tmp_path), "--backbone", "efficientnet_lite0",
        "--mode", "off-the-shelf", "--image-size", "32", "--epochs", "2", "--threads", "1",
    )
    assert code == 0, err
    assert "epoch 2:" in out and "checkpoint written" in out
    assert (tmp_path / "model" / "weights.pt").is_file()
    code, out, err = _run_cli(monkeypatch, capsys, "evaluate-classifier", "--run", str(tmp_path), "--split", "test")
    assert code == 0, err
    written = json.loads((tmp_path / "metrics" / "classifier_test.json").read_text())
    assert written["split"] == "test" and written["n"] == 3
    assert f"test (3 images): accuracy {written['accuracy']:.3f}" in out


def test_evaluating_a_run_whose_model_is_not_a_checkpoint_exits_2_with_one_line(tiny_squares, tmp_path, monkeypatch, capsys):
    save_dataset_json(tiny_squares, tmp_path / "dataset.json")
    (tmp_path / "model").write_text("not a folder")
    code, out, err = _run_cli(monkeypatch, capsys, "evaluate-classifier", "--run", str(tmp_path))
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "not an iconolens checkpoint" in lines[0] and str(tmp_path / "model") in lines[0]


def test_a_test_label_unseen_in_training_exits_2_naming_dataset_json(tiny_squares, tmp_path, monkeypatch, capsys):
    test_id = next(s.id for s in tiny_squares.samples if s.split == "test")
    samples = tuple(replace(s, labels=("violet",)) if s.id == test_id else s for s in tiny_squares.samples)
    dataset = replace(tiny_squares, samples=samples, classes=tiny_squares.classes + ("violet",))
    save_dataset_json(dataset, tmp_path / "dataset.json")
    code, _, err = _run_cli(monkeypatch, capsys, "train", "--run", str(tmp_path), "--image-size", "32")
    assert code == 2
    assert "label 'violet' appears in the test split but in no training image" in err
    assert str(tmp_path / "dataset.json") in err
    assert not (tmp_path / "model").exists()


def test_an_unknown_mode_is_refused(tiny_squares, tmp_path, monkeypatch, capsys):
    save_dataset_json(tiny_squares, tmp_path / "dataset.json")
    code, _, err = _run_cli(monkeypatch, capsys, "train", "--run", str(tmp_path), "--mode", "finetune")
    assert code == 2 and "--mode must be one of off-the-shelf, fine-tune, scratch" in err
