"""`iconolens train` / `evaluate-classifier` on a run folder, and their one-line refusals."""

from __future__ import annotations

import json
from dataclasses import replace


from iconolens.data.dataset_json import save_dataset_json


def test_train_then_evaluate_writes_checkpoint_and_metrics(run_cli, tiny_squares, tmp_path):
    save_dataset_json(tiny_squares, tmp_path / "dataset.json")
    code, out, err = run_cli("train", "--run", str(tmp_path), "--backbone", "efficientnet_lite0",
        "--mode", "off-the-shelf", "--image-size", "32", "--epochs", "2", "--threads", "1",
    )
    assert code == 0, err
    assert "epoch 2:" in out and "checkpoint written" in out
    assert (tmp_path / "model" / "weights.pt").is_file()
    code, out, err = run_cli("evaluate-classifier", "--run", str(tmp_path), "--split", "test")
    assert code == 0, err
    written = json.loads((tmp_path / "metrics" / "classifier_test.json").read_text())
    assert written["split"] == "test" and written["n"] == 3
    assert f"test (3 images): accuracy {written['accuracy']:.3f}" in out


def test_evaluating_a_run_whose_model_is_not_a_checkpoint_exits_2_with_one_line(run_cli, tiny_squares, tmp_path):
    save_dataset_json(tiny_squares, tmp_path / "dataset.json")
    (tmp_path / "model").write_text("not a folder")
    code, out, err = run_cli("evaluate-classifier", "--run", str(tmp_path))
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "not an iconolens checkpoint" in lines[0] and str(tmp_path / "model") in lines[0]


def test_a_test_label_unseen_in_training_exits_2_naming_dataset_json(run_cli, tiny_squares, tmp_path):
    test_id = next(s.id for s in tiny_squares.samples if s.split == "test")
    samples = tuple(replace(s, labels=("violet",)) if s.id == test_id else s for s in tiny_squares.samples)
    dataset = replace(tiny_squares, samples=samples, classes=tiny_squares.classes + ("violet",))
    save_dataset_json(dataset, tmp_path / "dataset.json")
    code, _, err = run_cli("train", "--run", str(tmp_path), "--image-size", "32")
    assert code == 2
    assert "label 'violet' appears in the test split but in no training image" in err
    assert str(tmp_path / "dataset.json") in err
    assert not (tmp_path / "model").exists()


def test_an_unknown_mode_is_refused(run_cli, tiny_squares, tmp_path):
    save_dataset_json(tiny_squares, tmp_path / "dataset.json")
    code, _, err = run_cli("train", "--run", str(tmp_path), "--mode", "finetune")
    assert code == 2 and "--mode must be one of off-the-shelf, fine-tune, scratch" in err


def test_training_on_a_named_device_resumes_on_another_and_an_unknown_one_is_refused(run_cli, tiny_squares, tmp_path):
    save_dataset_json(tiny_squares, tmp_path / "dataset.json")
    code, _, err = run_cli("train", "--run", str(tmp_path), "--device", "npu")
    assert code == 2 and "unknown device 'npu'" in err and not (tmp_path / "model").exists()
    common = ("train", "--run", str(tmp_path), "--backbone", "efficientnet_lite0", "--mode", "fine-tune",
              "--image-size", "32", "--epochs", "1", "--threads", "1")
    code, _, err = run_cli(*common, "--device", "cpu")
    assert code == 0, err
    state = (tmp_path / "model" / "training_state.pt").stat().st_mtime_ns
    # The same training asked for on "auto" is the same training: it resumes (nothing left to do at 1 epoch).
    code, out, err = run_cli(*common, "--device", "auto")
    assert code == 0, err
    assert (tmp_path / "model" / "training_state.pt").stat().st_mtime_ns == state
    meta = json.loads((tmp_path / "model" / "meta.json").read_text())
    assert meta["metrics"]["training"]["device"] == "auto"
