"""Training a classifier on a run's Dataset in one of the three ways of Sabatelli et al. (2018).

- ``off-the-shelf``: the ImageNet backbone stays frozen; its pooled features are extracted once (cached)
  and a head is trained on them: a softmax/sigmoid layer by RMSprop (lr 1e-3), a linear SVM, or a
  random forest (scores only).
- ``fine-tune``: every layer (or all but a frozen prefix) trained by SGD, Nesterov momentum 0.9, lr 1e-3;
  batch-norm layers keep their ImageNet statistics unless ``update_batch_norm`` is set. A frozen prefix of
  the feature stages runs once per image, not once per epoch (see ``iconolens.models.frozen_prefix``).
- ``scratch``: the same training from He-uniform initialisation.

Early stopping watches the validation loss and keeps the best epoch. Multi-label tasks use a sigmoid,
binary cross-entropy and per-class thresholds tuned on validation. ``init_from`` starts from another
iconolens checkpoint with a new head (two-stage transfer).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from iconolens.atomic import write_json_atomically
from iconolens.data.images import DEFAULT_MAX_PIXELS
from iconolens.data.records import Dataset, Problem
from iconolens.device import resolve_device
from iconolens.errors import BadAnnotationError, BadInputError
from iconolens.models.augmentation import augment_to_minimum
from iconolens.models.backbones import (
    backbone_spec,
    build_classifier,
    classifier_head,
    frozen_prefix_modules,
    replace_head,
)
from iconolens.models.checkpoint import load_checkpoint, load_run_model, save_checkpoint
from iconolens.models.features import cached_features, feature_cache_key, pooled_features
from iconolens.models.fitting import EpochCallback, FitSettings, fit, predict_logits
from iconolens.models.frozen_prefix import cacheable_prefix, prefix_outputs, skipping
from iconolens.models.labelled_images import (
    LabelledImages,
    check_classes,
    class_counts,
    load_split,
    resolve_task,
)
from iconolens.models.meta import Mode, ModelMeta, Task
from iconolens.models.metrics import classification_metrics, f_beta_per_example, tune_thresholds
from iconolens.models.sklearn_heads import fit_linear_svm, random_forest_scores
from iconolens.models.transforms import normalise
from iconolens.run import RunDirectory

Head = Literal["softmax", "svm", "forest"]
Balance = Literal["none", "weights", "sampler"]
TRAINING_STATE = "training_state.pt"


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides a training run (and, hashed, whether a saved state can be resumed)."""

    backbone: str = "mobilenet_v2"
    mode: Mode = "fine-tune"
    task: str = "auto"
    head: Head = "softmax"
    image_size: int = 224
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 7
    weights: str | None = None
    pretrained: bool = True
    init_from: str | None = None
    balance: Balance = "none"
    augment_to: int = 0
    frozen_fraction: float = 0.0
    update_batch_norm: bool = False
    seed: int = 0
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    device: str = "auto"  # where the network runs; not part of what a resumed run must match


@dataclass(frozen=True)
class TrainingOutcome:
    """What a run produced: the model and its metadata (None for a random-forest head), history, metrics."""

    model: nn.Module | None
    meta: ModelMeta | None
    history: list[dict[str, float]]
    best_epoch: int
    val_metrics: dict[str, Any]
    problems: tuple[Problem, ...] = field(default=())


def _probabilities(logits: torch.Tensor, task: Task) -> torch.Tensor:
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)


def _losses(task: Task, train: LabelledImages, balance: Balance) -> tuple[nn.Module, nn.Module, torch.Tensor | None]:
    """(training loss, validation loss, per-sample weights for a balanced sampler)."""
    counts = torch.as_tensor(class_counts(train), dtype=torch.float32).clamp_min(1.0)
    n = float(len(train))
    sample_weights = None
    if balance == "sampler":
        per_class = 1.0 / counts
        indicator = torch.as_tensor(train.indicator(), dtype=torch.float32)
        sample_weights = (indicator * per_class[None, :]).max(dim=1).values
    if task == "multilabel":
        pos_weight = ((n - counts) / counts).clamp_min(1e-3) if balance == "weights" else None
        return nn.BCEWithLogitsLoss(pos_weight=pos_weight), nn.BCEWithLogitsLoss(), sample_weights
    weight = n / (len(counts) * counts) if balance == "weights" else None
    return nn.CrossEntropyLoss(weight=weight), nn.CrossEntropyLoss(), sample_weights


def _val_score(task: Task):
    def score(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        if task == "multilabel":
            return {"val_f2@0.2": f_beta_per_example(targets.numpy(), torch.sigmoid(logits).numpy(), 0.2)}
        return {"val_accuracy": float((logits.argmax(1) == targets).float().mean())}

    return score


def _fingerprint(config: TrainingConfig, stage: str, train: LabelledImages, val: LabelledImages, classes: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    settings = {k: v for k, v in asdict(config).items() if k != "device"}
    digest.update(json.dumps([settings, stage, classes], sort_keys=True, default=str).encode())
    digest.update("\n".join(train.sample_ids + ("|",) + val.sample_ids).encode())
    digest.update(train.targets.numpy().tobytes())
    digest.update(train.images[:, :, ::7, ::7].numpy().tobytes())
    return digest.hexdigest()


def _starting_model(config: TrainingConfig, num_classes: int) -> nn.Module:
    torch.manual_seed(config.seed)
    if config.mode == "scratch":
        return build_classifier(config.backbone, num_classes, he_init=True)
    if config.init_from is not None:
        model, _ = load_checkpoint(config.init_from, expected_backbone=config.backbone)
        torch.manual_seed(config.seed)
        return replace_head(model, config.backbone, num_classes)
    return build_classifier(config.backbone, num_classes, weights=config.weights, pretrained=config.pretrained)


def train_classifier(
    dataset: Dataset,
    config: TrainingConfig,
    run: RunDirectory | str | Path,
    on_epoch_end: EpochCallback | None = None,
    source: str | Path | None = None,
) -> TrainingOutcome:
    """Train on the ``train`` split, stop early on ``val``, and write the checkpoint, metrics and figures.

    Resumes from ``RUN/model/training_state.pt`` when it was written by the same configuration.
    """
    run = run if isinstance(run, RunDirectory) else RunDirectory(run)
    spec = backbone_spec(config.backbone)
    if spec.fixed_input_size is not None and config.image_size != spec.fixed_input_size:
        raise BadInputError(
            f"{config.backbone} takes images of exactly {spec.fixed_input_size} pixels only (its position "
            f"embeddings are learnt for that size); use image size {spec.fixed_input_size}, not {config.image_size}"
        )
    if config.image_size < spec.min_input_size:
        raise BadInputError(f"{config.backbone} needs images of at least {spec.min_input_size} pixels, not {config.image_size}")
    if config.head != "softmax" and config.mode != "off-the-shelf":
        raise BadInputError(f"the {config.head} head exists only in off-the-shelf mode")
    where = resolve_device(config.device)
    task = resolve_task(dataset, config.task)
    check_classes(dataset, task, source if source is not None else run.dataset_json)
    classes = tuple(dataset.classes)
    train = load_split(dataset, "train", config.image_size, task, config.max_pixels)
    val = load_split(dataset, "val", config.image_size, task, config.max_pixels)
    problems = train.problems + val.problems
    if len(train) == 0:
        raise BadAnnotationError("no readable image in the train split", source or run.dataset_json)
    if len(val) == 0:
        raise BadAnnotationError(
            "no readable image in the val split, which early stopping needs (run `iconolens data split`)",
            source or run.dataset_json,
        )
    if config.augment_to > 0:
        train = augment_to_minimum(train, config.augment_to, config.seed)

    model = _starting_model(config, len(classes)).to(where)
    meta = ModelMeta(classes, config.backbone, config.image_size, spec.mean, spec.std, task, config.mode)
    train_loss, val_loss, sample_weights = _losses(task, train, config.balance)
    settings = FitSettings(config.epochs, config.batch_size, config.patience, config.seed)
    state_path = run.model_dir / TRAINING_STATE

    def pixels(batch: torch.Tensor) -> torch.Tensor:
        return normalise(batch, spec.mean, spec.std).to(where)

    best_epoch = 0
    history: list[dict[str, float]] = []
    if config.mode == "off-the-shelf":
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        weights_id = config.weights or config.init_from or (str(spec.default_weights()) if config.pretrained else "random")
        cache = run.root / "cache"

        def features_of(part: LabelledImages, name: str) -> torch.Tensor:
            pixels_digest = hashlib.sha256(part.images.numpy().tobytes()).hexdigest()
            key = feature_cache_key(config.backbone, weights_id, config.image_size, name, part.sample_ids,
                                    pixels_digest)
            return cached_features(cache, key, lambda: pooled_features(model, part.images, spec.mean, spec.std))

        train_x, val_x = features_of(train, "train"), features_of(val, "val")
        head = classifier_head(model)
        if config.head == "softmax":
            head_model = nn.Linear(head.in_features, len(classes))
            torch.manual_seed(config.seed)
            head_model.reset_parameters()
            optimizer = torch.optim.RMSprop(head_model.parameters(), lr=config.learning_rate)
            result = fit(
                head_model, train_x, train.targets, val_x, val.targets,
                prepare=lambda x: x, train_loss=train_loss, val_loss=val_loss, optimizer=optimizer,
                settings=settings, state_path=state_path,
                fingerprint=_fingerprint(config, "head", train, val, classes),
                val_score=_val_score(task), sample_weights=sample_weights,
                on_epoch_end=on_epoch_end, description="training head",
            )
            head_model.load_state_dict(result.best_state)
            weight, bias = head_model.weight.detach(), head_model.bias.detach()
            history, best_epoch = result.history, result.best_epoch
        elif config.head == "svm":
            weight, bias = fit_linear_svm(train_x.numpy(), train.targets.numpy(), task, len(classes), config.seed)
        else:
            scores = random_forest_scores(train_x.numpy(), train.targets.numpy(), val_x.numpy(), task,
                                          len(classes), config.seed)
            thresholds = tune_thresholds(val.indicator(), scores) if task == "multilabel" else None
            metrics = classification_metrics(val.targets.numpy(), scores, classes, task, thresholds)
            _write_outputs(run, None, metrics, [], 0, problems, config)
            return TrainingOutcome(None, None, [], 0, metrics, problems)
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    else:
        frozen = frozen_prefix_modules(model, config.frozen_fraction) if config.mode == "fine-tune" else []
        for module in frozen:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        eval_modules = list(frozen)
        if config.mode == "fine-tune" and not config.update_batch_norm:
            # Small batches of paintings give noisy batch statistics; the ImageNet ones are kept (the
            # affine parameters still learn), which makes fine-tuning on a few hundred images stable.
            eval_modules += [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=config.learning_rate, momentum=0.9, nesterov=True)
        prefix = cacheable_prefix(model, frozen)
        train_in, val_in, prepare = train.images, val.images, pixels
        if prefix:
            # The frozen prefix sees the same images every epoch and learns nothing: run it once.
            cached_train = prefix_outputs(model, prefix, train.images, pixels, config.batch_size * 2)
            cached_val = None if cached_train is None else prefix_outputs(
                model, prefix, val.images, pixels, config.batch_size * 2)
            if cached_train is None or cached_val is None:
                prefix = []
            else:
                train_in, val_in, prepare = cached_train, cached_val, lambda x: x.to(where)
        with skipping(prefix):
            result = fit(
                model, train_in, train.targets, val_in, val.targets,
                prepare=prepare, train_loss=train_loss.to(where), val_loss=val_loss, optimizer=optimizer,
                settings=settings, state_path=state_path,
                fingerprint=_fingerprint(config, "network", train, val, classes),
                val_score=_val_score(task), sample_weights=sample_weights, frozen_modules=eval_modules,
                on_epoch_end=on_epoch_end, description=f"training {config.backbone}",
            )
        model.load_state_dict(result.best_state)
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        history, best_epoch = result.history, result.best_epoch

    model.eval()
    val_probs = _probabilities(predict_logits(model, val.images, pixels, config.batch_size * 2), task).numpy()
    thresholds = tune_thresholds(val.indicator(), val_probs) if task == "multilabel" else None
    metrics = classification_metrics(val.targets.numpy(), val_probs, classes, task, thresholds)
    summary = {k: metrics[k] for k in ("accuracy", "top5_accuracy", "macro_f1", "roc_auc", "pr_auc", "f2_per_example") if k in metrics}
    meta = replace(
        meta,
        thresholds=None if thresholds is None else tuple(float(t) for t in thresholds),
        metrics={"val": summary, "best_epoch": best_epoch, "head": config.head,
                 "training": {k: v for k, v in asdict(config).items() if k not in ("max_pixels",)}},
    )
    save_checkpoint(run.model_dir, model, meta)
    _write_outputs(run, meta, metrics, history, best_epoch, problems, config)
    return TrainingOutcome(model, meta, history, best_epoch, metrics, problems)


def _write_outputs(
    run: RunDirectory,
    meta: ModelMeta | None,
    metrics: dict[str, Any],
    history: list[dict[str, float]],
    best_epoch: int,
    problems: tuple[Problem, ...],
    config: TrainingConfig,
) -> None:
    from iconolens.report.training_figures import plot_confusion_matrix, plot_learning_curve

    suffix = "" if config.head == "softmax" else f"_{config.head}"
    document = dict(metrics)
    document["split"] = "val"
    document["skipped_images"] = [{"path": p.path, "problem": p.message} for p in problems]
    write_json_atomically(run.metrics_dir / f"classifier_val{suffix}.json", document)
    if history:
        write_json_atomically(run.metrics_dir / "training_history.json", {"best_epoch": best_epoch, "epochs": history})
        plot_learning_curve(history, run.report_dir / "learning_curve.png", best_epoch)
    if "confusion_matrix" in metrics:
        plot_confusion_matrix(metrics["confusion_matrix"], metrics["classes"],
                              run.report_dir / f"confusion_val{suffix}.png", "Confusion matrix (val)")


def evaluate_classifier(
    dataset: Dataset,
    run: RunDirectory | str | Path,
    split: str = "test",
    batch_size: int = 64,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    source: str | Path | None = None,
) -> dict[str, Any]:
    """Score the run's checkpoint on ``split`` and write ``metrics/classifier_<split>.json`` and its figure."""
    run = run if isinstance(run, RunDirectory) else RunDirectory(run)
    model, meta = load_run_model(run, expected_classes=dataset.classes)
    where = source if source is not None else run.dataset_json
    check_classes(dataset, meta.task, where)
    data = load_split(dataset, split, meta.input_size, meta.task, max_pixels)
    if len(data) == 0:
        raise BadAnnotationError(f"no readable image in the {split} split", where)
    logits = predict_logits(model, data.images, lambda b: normalise(b, meta.mean, meta.std), batch_size)
    probs = _probabilities(logits, meta.task).numpy()
    metrics = classification_metrics(data.targets.numpy(), probs, meta.classes, meta.task, meta.thresholds)
    document = dict(metrics)
    document["split"] = split
    document["skipped_images"] = [{"path": p.path, "problem": p.message} for p in data.problems]
    write_json_atomically(run.metrics_dir / f"classifier_{split}.json", document)
    if "confusion_matrix" in metrics:
        from iconolens.report.training_figures import plot_confusion_matrix

        plot_confusion_matrix(metrics["confusion_matrix"], metrics["classes"],
                              run.report_dir / f"confusion_{split}.png", f"Confusion matrix ({split})")
    return document


def predict_probabilities(model: nn.Module, meta: ModelMeta, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """(N, C) class probabilities (softmax or per-class sigmoid, per the task) for uint8 images (N, 3, S, S)."""
    logits = predict_logits(model, images, lambda b: normalise(b, meta.mean, meta.std), batch_size)
    return _probabilities(logits, meta.task).numpy()
