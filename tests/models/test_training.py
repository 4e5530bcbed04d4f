"""Training on an easy collection: it learns, resumes exactly, and refuses unusable class lists."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from iconolens.data.records import Dataset
from iconolens.errors import BadAnnotationError, BadCheckpointError
from iconolens.models.backbones import build_classifier
from iconolens.models.checkpoint import load_checkpoint
from iconolens.models.fitting import FitSettings, fit
from iconolens.models.training import TrainingConfig, evaluate_classifier, train_classifier

SMALL = dict(image_size=32, batch_size=8)


def test_fine_tuned_model_beats_chance_by_a_wide_margin(squares, tmp_path):
    config = TrainingConfig(backbone="mobilenet_v2", mode="fine-tune", epochs=6, patience=6, **SMALL)
    outcome = train_classifier(squares, config, tmp_path)
    test = evaluate_classifier(squares, tmp_path, "test")
    assert test["n"] == 9
    assert test["accuracy"] >= 0.8  # chance is 1/3
    assert np.sum(test["confusion_matrix"]) == 9
    # what was written is what was returned, and the checkpoint carries the run's facts
    model, meta = load_checkpoint(tmp_path / "model", expected_classes=squares.classes)
    assert meta.mode == "fine-tune" and meta.input_size == 32 and meta.metrics["best_epoch"] == outcome.best_epoch
    history = json.loads((tmp_path / "metrics" / "training_history.json").read_text())
    assert len(history["epochs"]) == len(outcome.history)
    best = min(outcome.history, key=lambda h: h["val_loss"])
    assert outcome.best_epoch == best["epoch"]
    assert (tmp_path / "report" / "learning_curve.png").stat().st_size > 0
    assert (tmp_path / "report" / "confusion_test.png").stat().st_size > 0


def test_resume_after_interruption_equals_an_uninterrupted_run(tiny_squares, tmp_path):
    squares = tiny_squares
    config = TrainingConfig(backbone="mobilenet_v2", mode="fine-tune", epochs=3, patience=5, image_size=32, batch_size=4)
    train_classifier(squares, config, tmp_path / "straight")

    class Killed(Exception):
        pass

    def kill_after_second(epoch: int, _record: dict) -> None:
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train_classifier(squares, config, tmp_path / "resumed", on_epoch_end=kill_after_second)
    assert not (tmp_path / "resumed" / "model" / "weights.pt").exists()
    seen: list[int] = []
    train_classifier(squares, config, tmp_path / "resumed", on_epoch_end=lambda e, _r: seen.append(e))
    assert seen == [3]  # only the unfinished epoch ran again
    a = torch.load(tmp_path / "straight" / "model" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "model" / "weights.pt", weights_only=True)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((tmp_path / "straight" / "metrics" / "training_history.json").read_text())
    hb = json.loads((tmp_path / "resumed" / "metrics" / "training_history.json").read_text())
    assert ha == hb


def _opposed_fit(tmp_path, epochs: int, patience: int):
    """A linear model whose validation labels contradict its training labels: learning raises val loss."""
    generator = torch.Generator().manual_seed(0)
    x_train = torch.randn(64, 4, generator=generator)
    x_val = torch.randn(32, 4, generator=generator)
    y_train = (x_train[:, 0] > 0).long()
    y_val = (x_val[:, 0] <= 0).long()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    result = fit(
        model, x_train, y_train, x_val, y_val,
        prepare=lambda b: b, train_loss=torch.nn.CrossEntropyLoss(), val_loss=torch.nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.5), settings=FitSettings(epochs, 16, patience, 0),
        state_path=tmp_path / f"state-{epochs}-{patience}.pt", fingerprint="opposed",
    )
    return model, result


def test_early_stopping_keeps_the_epoch_of_lowest_validation_loss(tmp_path):
    _, result = _opposed_fit(tmp_path, epochs=20, patience=2)
    losses = [h["val_loss"] for h in result.history]
    assert all(b > a for a, b in zip(losses, losses[1:]))  # every epoch makes validation worse
    assert result.best_epoch == 1
    assert len(result.history) == 1 + 2 and result.stopped_early  # patience 2 after the best epoch
    # the kept weights are those after epoch 1: the same as a run of one epoch
    one_epoch_model, _ = _opposed_fit(tmp_path, epochs=1, patience=2)
    assert all(torch.equal(result.best_state[k], v) for k, v in one_epoch_model.state_dict().items())


def test_scratch_mode_starts_from_seeded_he_initialisation(tiny_squares, tmp_path):
    config = TrainingConfig(backbone="resnet18", mode="scratch", epochs=1, learning_rate=0.0, seed=5,
                            image_size=32, batch_size=4)
    outcome = train_classifier(tiny_squares, config, tmp_path)
    torch.manual_seed(5)
    expected = build_classifier("resnet18", 3, he_init=True)
    assert outcome.meta.mode == "scratch"
    for name in ("conv1.weight", "layer2.0.conv1.weight", "fc.weight"):
        assert torch.equal(outcome.model.state_dict()[name], expected.state_dict()[name])
    # layer4[0].conv2 maps 512 -> 512 channels with 3 x 3 kernels: He variance 2 / (512 * 9)
    assert outcome.model.layer4[0].conv2.weight.var().item() == pytest.approx(2 / (512 * 9), rel=0.05)


def test_off_the_shelf_heads_share_cached_features(squares, tmp_path):
    base = TrainingConfig(backbone="mobilenet_v2", mode="off-the-shelf", epochs=15, patience=15, **SMALL)
    softmax = train_classifier(squares, base, tmp_path)
    cached = sorted((tmp_path / "cache").glob("features-*.npy"))
    assert len(cached) == 2  # train and val
    stamps = [p.stat().st_mtime_ns for p in cached]
    svm = train_classifier(squares, replace(base, head="svm"), tmp_path / "svm_run")
    forest = train_classifier(squares, replace(base, head="forest"), tmp_path)
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # reused, not recomputed
    assert forest.model is None and (tmp_path / "metrics" / "classifier_val_forest.json").is_file()
    for outcome in (softmax, svm, forest):
        assert outcome.val_metrics["accuracy"] >= 0.8
    # the SVM folded into the final layer: the checkpoint's own predictions give the reported metric
    test = evaluate_classifier(squares, tmp_path / "svm_run", "val")
    assert test["accuracy"] == pytest.approx(svm.val_metrics["accuracy"])


def test_multilabel_training_tunes_one_threshold_per_class(tmp_path, make_squares):
    single = make_squares(tmp_path / "img", {"red": 10, "green": 10, "blue": 10}, size=32, seed=3)
    # images of red also carry "warm"; the task becomes multi-label with 4 classes
    samples = tuple(replace(s, labels=s.labels + (("warm",) if s.labels[0] == "red" else ())) for s in single.samples)
    dataset = Dataset(samples, single.classes + ("warm",), multi_label=True)
    config = TrainingConfig(backbone="efficientnet_lite0", mode="off-the-shelf", epochs=10, patience=10, **SMALL)
    outcome = train_classifier(dataset, config, tmp_path / "run")
    assert outcome.meta.task == "multilabel"
    assert len(outcome.meta.thresholds) == 4
    assert set(outcome.val_metrics["f2_per_example"]) == {"0.2", "0.3", "0.4", "0.5"}
    probe = evaluate_classifier(dataset, tmp_path / "run", "val")
    assert probe["thresholds"] == pytest.approx(list(outcome.meta.thresholds))


def test_balanced_sampler_and_augmentation_run_on_an_imbalanced_set(tmp_path, make_squares):
    dataset = make_squares(tmp_path / "img", {"red": 20, "green": 5, "blue": 5}, size=32, seed=4)
    config = TrainingConfig(backbone="efficientnet_lite0", mode="off-the-shelf", epochs=3, patience=3,
                            balance="sampler", augment_to=12, **SMALL)
    outcome = train_classifier(dataset, config, tmp_path / "run")
    assert len(outcome.history) == 3


def _with_split_labels(dataset: Dataset, relabel: dict[str, tuple[str, str]]) -> Dataset:
    """Move the given samples' labels: id -> (new label, split)."""
    samples = tuple(
        replace(s, labels=(relabel[s.id][0],), split=relabel[s.id][1]) if s.id in relabel else s for s in dataset.samples
    )
    return replace(dataset, samples=samples)


def test_a_validation_label_unseen_in_training_is_refused(squares, tmp_path):
    val_ids = [s.id for s in squares.samples if s.split == "val"][:1]
    dataset = _with_split_labels(squares, {val_ids[0]: ("Magdalene", "val")})
    dataset = replace(dataset, classes=dataset.classes + ("Magdalene",))
    source = tmp_path / "dataset.json"
    with pytest.raises(BadAnnotationError, match="'Magdalene' appears in the val split but in no training image") as info:
        train_classifier(dataset, TrainingConfig(**SMALL), tmp_path, source=source)
    assert str(source) in str(info.value) and "\n" not in str(info.value)


def test_an_empty_class_is_refused(squares, tmp_path):
    dataset = replace(squares, classes=squares.classes + ("violet",))
    with pytest.raises(BadAnnotationError, match="class 'violet' has no images"):
        train_classifier(dataset, TrainingConfig(**SMALL), tmp_path)


def test_a_label_outside_the_class_list_is_refused(squares, tmp_path):
    first = squares.samples[0].id
    dataset = _with_split_labels(squares, {first: ("violet", "train")})
    with pytest.raises(BadAnnotationError, match="'violet', which is not in the class list"):
        train_classifier(dataset, TrainingConfig(**SMALL), tmp_path)


def test_evaluating_with_another_class_list_is_refused(squares, tmp_path):
    config = TrainingConfig(backbone="efficientnet_lite0", mode="off-the-shelf", epochs=1, **SMALL)
    train_classifier(squares, config, tmp_path)
    reordered = replace(squares, classes=tuple(reversed(squares.classes)))
    with pytest.raises(BadCheckpointError, match="another class list"):
        evaluate_classifier(reordered, tmp_path, "test")


def test_two_stage_transfer_needs_the_same_backbone(squares, tmp_path):
    first = TrainingConfig(backbone="efficientnet_lite0", mode="off-the-shelf", epochs=1, **SMALL)
    train_classifier(squares, first, tmp_path / "stage1")
    two = replace(squares, classes=squares.classes[:2],
                  samples=tuple(s for s in squares.samples if s.labels[0] in squares.classes[:2]))
    second = TrainingConfig(backbone="efficientnet_lite0", mode="fine-tune", epochs=1,
                            init_from=str(tmp_path / "stage1" / "model"), **SMALL)
    outcome = train_classifier(two, second, tmp_path / "stage2")
    stage1, _ = load_checkpoint(tmp_path / "stage1" / "model")
    assert outcome.model._fc.out_features == 2
    # the body starts from stage 1 (fine-tuning then moves it, but the stem barely changes in one epoch)
    assert torch.allclose(outcome.model._conv_stem.weight, stage1._conv_stem.weight, atol=1e-2)
    with pytest.raises(BadCheckpointError, match="efficientnet_lite0 model, not the requested mobilenet_v2"):
        train_classifier(two, replace(second, backbone="mobilenet_v2"), tmp_path / "stage3")
