"""The epoch loop shared by every trainable part: early stopping on validation loss, and resumption.

After every finished epoch the whole training state (weights, optimiser, best weights so far, history)
is written atomically to one file, so a run killed at any moment restarts from its last finished epoch.
Each epoch draws its batch order and dropout noise from ``seed`` and the epoch number alone, which makes
a resumed run reach exactly the state an uninterrupted one would.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from iconolens.atomic import write_bytes_atomically
from iconolens.progress import progress

Batch = Callable[[torch.Tensor], torch.Tensor]
EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class FitSettings:
    """How long and how to train: epochs, batch size, early-stopping patience, seed."""

    epochs: int
    batch_size: int
    patience: int
    seed: int


@dataclass(frozen=True)
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict[str, float]]
    stopped_early: bool


def _state_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def read_training_state(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The saved state if it belongs to this very run configuration, else None (start afresh)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        return None
    return state


def epoch_order(n: int, epoch: int, seed: int, sample_weights: torch.Tensor | None) -> torch.Tensor:
    """Indices of one epoch: a seeded permutation, or a seeded weighted draw with replacement."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if sample_weights is None:
        return torch.randperm(n, generator=generator)
    return torch.multinomial(sample_weights, n, replacement=True, generator=generator)


def fit(
    model: nn.Module,
    train_inputs: torch.Tensor,
    train_targets: torch.Tensor,
    val_inputs: torch.Tensor,
    val_targets: torch.Tensor,
    *,
    prepare: Batch,
    train_loss: nn.Module,
    val_loss: nn.Module,
    optimizer: torch.optim.Optimizer,
    settings: FitSettings,
    state_path: Path,
    fingerprint: str,
    val_score: Callable[[torch.Tensor, torch.Tensor], dict[str, float]] | None = None,
    sample_weights: torch.Tensor | None = None,
    frozen_modules: Sequence[nn.Module] = (),
    on_epoch_end: EpochCallback | None = None,
    description: str = "training",
) -> FitResult:
    """Train ``model`` with early stopping on validation loss; resume from ``state_path`` when it matches.

    ``prepare`` turns stored inputs (uint8 images or cached features) into the model's input, on the model's
    device; targets follow the logits there, and validation logits come back to the CPU.
    ``frozen_modules`` stay in eval mode (their batch-norm statistics are ImageNet's, not re-estimated).
    """
    state = read_training_state(state_path, fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best_state = state["best_state"]
        best_loss = float(state["best_loss"])
        best_epoch = int(state["best_epoch"])
        since_best = int(state["since_best"])
        history = list(state["history"])
        start = int(state["epoch"]) + 1
        stopped = bool(state["stopped"])
    else:
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        best_loss, best_epoch, since_best, history, start, stopped = math.inf, 0, 0, [], 1, False

    n = int(train_inputs.shape[0])
    for epoch in progress(range(start, settings.epochs + 1), description, total=settings.epochs - start + 1):
        if stopped:
            break
        torch.manual_seed(settings.seed * 7919 + epoch)
        model.train()
        for module in frozen_modules:
            module.eval()
        order = epoch_order(n, epoch, settings.seed, sample_weights)
        total, seen = 0.0, 0
        for start_index in range(0, n, settings.batch_size):
            idx = order[start_index : start_index + settings.batch_size]
            if idx.numel() < 2 and n >= 2:
                continue  # a batch of one breaks batch norm and carries little signal
            logits = model(prepare(train_inputs[idx]))
            loss = train_loss(logits, train_targets[idx].to(logits.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.numel()
            seen += idx.numel()
        val_logits = predict_logits(model, val_inputs, prepare, settings.batch_size * 2)
        current = float(val_loss(val_logits, val_targets))
        record = {"epoch": float(epoch), "train_loss": total / max(seen, 1), "val_loss": current}
        if val_score is not None:
            record.update(val_score(val_logits, val_targets))
        history.append(record)
        if current < best_loss:
            best_loss, best_epoch, since_best = current, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
        stopped = since_best >= settings.patience
        write_bytes_atomically(
            state_path,
            _state_bytes(
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "best_state": best_state,
                    "best_loss": best_loss,
                    "best_epoch": best_epoch,
                    "since_best": since_best,
                    "history": history,
                    "stopped": stopped,
                }
            ),
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    return FitResult(copy.deepcopy(best_state), best_epoch, history, stopped)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor, prepare: Batch, batch_size: int = 64) -> torch.Tensor:
    """Logits of ``model`` in eval mode over ``inputs`` in batches (the model's mode is restored after)."""
    was_training = model.training
    model.eval()
    try:
        chunks = [model(prepare(inputs[i : i + batch_size])).cpu() for i in range(0, int(inputs.shape[0]), batch_size)]
    finally:
        model.train(was_training)
    if not chunks:
        return torch.zeros((0, 0))
    return torch.cat(chunks)
