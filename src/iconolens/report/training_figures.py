"""Figures of a training run: per-epoch learning curves and the confusion matrix (PNG, written atomically)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from iconolens.atomic import write_bytes_atomically  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return write_bytes_atomically(path, buffer.getvalue())


def plot_learning_curve(history: Sequence[dict[str, float]], path: str | Path, best_epoch: int | None = None) -> Path:
    """Training and validation loss per epoch (left) and any validation scores (right)."""
    epochs = [h["epoch"] for h in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    left.plot(epochs, [h["val_loss"] for h in history], marker="o", label="val loss")
    if best_epoch:
        left.axvline(best_epoch, color="grey", linestyle="--", label=f"kept epoch {best_epoch}")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    score_keys = [k for k in (history[0] if history else {}) if k not in ("epoch", "train_loss", "val_loss")]
    for key in score_keys:
        right.plot(epochs, [h[key] for h in history], marker="o", label=key)
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    for axes in (left, right):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if score_keys:
        right.legend()
    figure.suptitle("Learning curve")
    return _save(figure, Path(path))


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (true class per row) with the raw counts written in the cells."""
    counts = np.asarray(matrix, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    side = max(4.0, 0.45 * len(classes) + 2)
    figure, axes = plt.subplots(figsize=(side, side))
    axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(classes)), classes, rotation=90)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(classes) <= 25:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if counts[i, j]:
                    axes.text(j, i, str(counts[i, j]), ha="center", va="center",
                              color="white" if share[i, j] > 0.5 else "black", fontsize=7)
    axes.set_title(title or "Confusion matrix")
    return _save(figure, Path(path))
