"""`iconolens train` and `iconolens evaluate-classifier`: classifiers by transfer learning and their metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iconolens.cli.console import CommandConsole
from iconolens.device import DEVICE_HELP
from iconolens.errors import BadInputError

console = CommandConsole(highlight=False, soft_wrap=True)

BACKBONE_HELP = (
    "Architecture: efficientnet_lite0 or mobilenet_v2 (ImageNet weights shipped), resnet18, resnet50, "
    "vgg19, inception_v3, alexnet, convnext_tiny, swin_t, vit_b_16 (224 px only) (ImageNet weights only "
    "from --weights, else random)."
)


def _load_run_dataset(run: Path):
    from iconolens.data.dataset_json import load_dataset_json
    from iconolens.run import RunDirectory

    path = RunDirectory(run).dataset_json
    if not path.is_file():
        raise BadInputError("no dataset.json in the run folder (create it with `iconolens data split`)", run)
    return load_dataset_json(path), path


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise BadInputError(f"{option} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def train(
    run: Path = typer.Option(..., "--run", help="Run folder holding dataset.json with train/val/test splits."),
    backbone: str = typer.Option("mobilenet_v2", "--backbone", help=BACKBONE_HELP),
    mode: str = typer.Option(
        "fine-tune", "--mode",
        help="off-the-shelf (frozen backbone, cached features, new head), fine-tune (all layers, SGD "
        "Nesterov) or scratch (He-uniform initialisation, then as fine-tune).",
    ),
    head: str = typer.Option(
        "softmax", "--head",
        help="Off-the-shelf head: softmax (sigmoid for multi-label) layer by RMSprop, svm (linear SVM folded "
        "into the final layer) or forest (random forest: metrics only, no checkpoint).",
    ),
    task: str = typer.Option("auto", "--task", help="auto, multiclass or multilabel (sigmoid + BCE, tuned thresholds)."),
    epochs: int = typer.Option(30, "--epochs", min=1, help="Most epochs to train (early stopping may end sooner)."),
    image_size: int = typer.Option(224, "--image-size", min=16, help="Square input size in pixels."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per optimisation step."),
    learning_rate: float = typer.Option(1e-3, "--lr", help="Learning rate (RMSprop for heads, SGD otherwise)."),
    patience: int = typer.Option(7, "--patience", min=1, help="Epochs without a lower validation loss before stopping."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="ImageNet state-dict file for the backbone; nothing is downloaded."),
    init_from: Optional[Path] = typer.Option(
        None, "--init-from", help="An iconolens checkpoint folder of the same backbone to start from (its head is replaced)."
    ),
    balance: str = typer.Option("none", "--balance", help="Class imbalance: none, weights (weighted loss) or sampler (balanced sampling)."),
    augment_to: int = typer.Option(0, "--augment-to", min=0, help="Augment rare classes offline to at least this many training images."),
    frozen_fraction: float = typer.Option(
        0.0, "--frozen-fraction", min=0.0, max=1.0, help="Fine-tune: fraction of early feature stages kept frozen."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, batch order, dropout and augmentation."),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads for PyTorch."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Train a classifier on the run's train split, early-stopped on val; writes RUN/model, metrics and figures."""
    import torch

    from iconolens.models.training import TrainingConfig, train_classifier

    torch.set_num_threads(threads)
    dataset, source = _load_run_dataset(run)
    config = TrainingConfig(
        backbone=backbone,
        mode=_choice(mode, ("off-the-shelf", "fine-tune", "scratch"), "--mode"),  # type: ignore[arg-type]
        task=_choice(task, ("auto", "multiclass", "multilabel"), "--task"),
        head=_choice(head, ("softmax", "svm", "forest"), "--head"),  # type: ignore[arg-type]
        image_size=image_size, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        patience=patience, weights=None if weights is None else str(weights),
        init_from=None if init_from is None else str(init_from),
        balance=_choice(balance, ("none", "weights", "sampler"), "--balance"),  # type: ignore[arg-type]
        augment_to=augment_to, frozen_fraction=frozen_fraction, seed=seed, device=device,
    )

    def report_epoch(epoch: int, record: dict[str, float]) -> None:
        scores = "  ".join(f"{k} {v:.3f}" for k, v in record.items() if k != "epoch")
        console.print(f"epoch {epoch}: {scores}")

    outcome = train_classifier(dataset, config, run, on_epoch_end=report_epoch, source=source)
    _print_metrics("val", outcome.val_metrics)
    for problem in outcome.problems:
        console.print(f"skipped {problem.path}: {problem.message}")
    if outcome.model is None:
        console.print("random-forest head: metrics written to RUN/metrics; no checkpoint (a forest has no CAM form)")
    else:
        console.print(f"checkpoint written to {run / 'model'} (best epoch {outcome.best_epoch})")


def evaluate_classifier(
    run: Path = typer.Option(..., "--run", help="Run folder with dataset.json and a trained model/."),
    split: str = typer.Option("test", "--split", help="Split to score: train, val or test."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass."),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads for PyTorch."),
) -> None:
    """Score the run's classifier on a split; writes RUN/metrics/classifier_<split>.json and a confusion matrix."""
    import torch

    from iconolens.models.training import evaluate_classifier as evaluate

    torch.set_num_threads(threads)
    dataset, source = _load_run_dataset(run)
    metrics = evaluate(dataset, run, _choice(split, ("train", "val", "test"), "--split"), batch_size, source=source)
    _print_metrics(split, metrics)


def _print_metrics(split: str, metrics: dict) -> None:
    keys = ("accuracy", "top5_accuracy", "exact_match", "macro_f1", "roc_auc", "pr_auc")
    shown = "  ".join(f"{k} {metrics[k]:.3f}" for k in keys if isinstance(metrics.get(k), float))
    console.print(f"{split} ({metrics['n']} images): {shown}")
    if "f2_per_example" in metrics:
        f2 = "  ".join(f"@{t} {v:.3f}" for t, v in metrics["f2_per_example"].items())
        console.print(f"F2 per example: {f2}")


def register(app: typer.Typer) -> None:
    """Add `train` and `evaluate-classifier` to the main app."""
    app.command("train", help="Train a classifier (off-the-shelf, fine-tune or scratch) on a run's dataset.")(train)
    app.command("evaluate-classifier", help="Score a run's classifier on a split and write its metrics.")(evaluate_classifier)
