"""Checkpoints round-trip exactly and refuse what is not theirs, each with one sentence."""

from __future__ import annotations

import json

import pytest
import torch

from iconolens.errors import BadCheckpointError
from iconolens.models.backbones import build_classifier
from iconolens.models.checkpoint import load_checkpoint, load_run_model, read_run_meta, run_model_dir, save_checkpoint
from iconolens.models.meta import ModelMeta

CLASSES = ("Peter", "Paul", "Mary")


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_classifier("resnet18", 3, pretrained=False).eval()
    meta = ModelMeta(CLASSES, "resnet18", input_size=48, task="multiclass", mode="scratch", metrics={"val": {"accuracy": 0.5}})
    save_checkpoint(tmp_path / "model", model, meta)
    return tmp_path / "model", model, meta


def _one_sentence(error: BaseException, path) -> None:
    text = str(error)
    assert str(path) in text and "\n" not in text


def test_round_trip_gives_identical_logits_and_metadata(saved):
    folder, model, meta = saved
    loaded, loaded_meta = load_checkpoint(folder, expected_classes=CLASSES, expected_backbone="resnet18")
    assert not loaded.training
    assert loaded_meta == meta
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_plain_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(BadCheckpointError, match="not an iconolens checkpoint") as info:
        load_checkpoint(path)
    _one_sentence(info.value, path)


def test_weights_that_are_not_a_state_dict_are_refused(saved):
    folder, _, _ = saved
    (folder / "weights.pt").write_bytes(b"\x80\x04 definitely not torch")
    with pytest.raises(BadCheckpointError, match="not a PyTorch state dict") as info:
        load_checkpoint(folder)
    _one_sentence(info.value, folder / "weights.pt")


def test_a_pickled_object_is_refused_without_being_executed(saved, tmp_path):
    folder, _, _ = saved
    torch.save({"model": torch.nn.Linear(2, 2)}, folder / "weights.pt")  # needs unpickling of code
    with pytest.raises(BadCheckpointError):
        load_checkpoint(folder)


def test_weights_of_another_backbone_are_refused(saved):
    folder, _, _ = saved
    torch.save(build_classifier("alexnet", 3, pretrained=False).state_dict(), folder / "weights.pt")
    with pytest.raises(BadCheckpointError, match="another backbone") as info:
        load_checkpoint(folder)
    _one_sentence(info.value, folder / "weights.pt")


def test_a_checkpoint_of_another_backbone_than_requested_is_refused(saved):
    folder, _, _ = saved
    with pytest.raises(BadCheckpointError, match="resnet18 model, not the requested mobilenet_v2") as info:
        load_checkpoint(folder, expected_backbone="mobilenet_v2")
    _one_sentence(info.value, folder)


def test_a_checkpoint_with_another_class_list_is_refused(saved):
    folder, _, _ = saved
    with pytest.raises(BadCheckpointError, match="another class list") as info:
        load_checkpoint(folder, expected_classes=("Peter", "Paul", "John"))
    _one_sentence(info.value, folder)


def test_metadata_listing_more_classes_than_the_head_has_is_refused(saved):
    folder, _, meta = saved
    data = meta.to_json()
    data["classes"] = ["a", "b", "c", "d"]
    (folder / "meta.json").write_text(json.dumps(data))
    with pytest.raises(BadCheckpointError, match="3 outputs but meta.json lists 4 classes"):
        load_checkpoint(folder)


def test_missing_metadata_is_refused(saved):
    folder, _, _ = saved
    (folder / "meta.json").unlink()
    with pytest.raises(BadCheckpointError, match="meta.json is missing"):
        load_checkpoint(folder)


@pytest.mark.parametrize("left_behind", [None, "training_state.pt"])
def test_a_run_without_a_model_says_which_command_makes_one(tmp_path, left_behind):
    run = tmp_path / "run"
    run.mkdir()
    if left_behind:  # an interrupted training leaves its state, not a model
        (run / "model").mkdir()
        (run / "model" / left_behind).write_bytes(b"state")
    for read in (run_model_dir, read_run_meta, load_run_model):
        with pytest.raises(BadCheckpointError) as info:
            read(run)
        assert f"the run has no trained model yet; make one with `iconolens train --run {run}`" in str(info.value)
        _one_sentence(info.value, run / "model")


def test_a_run_whose_model_lacks_a_file_is_a_damaged_checkpoint_not_a_missing_one(saved):
    folder, _, _ = saved
    (folder / "weights.pt").unlink()
    with pytest.raises(BadCheckpointError, match="weights.pt or meta.json is missing"):
        read_run_meta(folder.parent)


def test_the_run_model_is_the_checkpoint_in_its_model_folder(saved):
    folder, model, meta = saved
    assert run_model_dir(folder.parent) == folder
    loaded, loaded_meta = load_run_model(folder.parent, expected_classes=CLASSES)
    assert loaded_meta == meta == read_run_meta(folder.parent)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
