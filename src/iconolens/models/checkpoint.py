"""Checkpoints: ``weights.pt`` (a plain state dict) beside ``meta.json`` (ModelMeta).

A checkpoint is data, never code: the weights are read with ``torch.load(weights_only=True)`` and the
model is rebuilt from the registry named in the metadata. Anything that is not such a pair, or whose
weights do not fit the architecture the metadata names, is refused with one sentence.
"""

from __future__ import annotations

import io
import json
import shlex
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from iconolens.atomic import write_bytes_atomically, write_json_atomically
from iconolens.errors import BadCheckpointError
from iconolens.models.backbones import BACKBONES, build_classifier
from iconolens.models.meta import ModelMeta
from iconolens.run import RunDirectory

WEIGHTS_FILE = "weights.pt"
META_FILE = "meta.json"


def save_checkpoint(model_dir: str | Path, model: nn.Module, meta: ModelMeta) -> Path:
    """Write ``model``'s state dict and ``meta`` into ``model_dir`` (each file atomically)."""
    model_dir = Path(model_dir)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    write_bytes_atomically(model_dir / WEIGHTS_FILE, buffer.getvalue())
    write_json_atomically(model_dir / META_FILE, meta.to_json())
    return model_dir


def read_meta(model_dir: str | Path) -> ModelMeta:
    """The metadata of the checkpoint in ``model_dir``, or a sentence saying why it is not one."""
    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise BadCheckpointError("checkpoint folder does not exist", model_dir)
    if not model_dir.is_dir():
        raise BadCheckpointError(
            f"not an iconolens checkpoint: expected a folder with {WEIGHTS_FILE} and {META_FILE}", model_dir
        )
    meta_path = model_dir / META_FILE
    if not meta_path.is_file() or not (model_dir / WEIGHTS_FILE).is_file():
        raise BadCheckpointError(
            f"not an iconolens checkpoint: {WEIGHTS_FILE} or {META_FILE} is missing", model_dir
        )
    try:
        meta = ModelMeta.from_json(json.loads(meta_path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise BadCheckpointError("not iconolens checkpoint metadata (unreadable or missing fields)", meta_path) from None
    if meta.backbone not in BACKBONES:
        raise BadCheckpointError(f"names an unknown backbone {meta.backbone!r}", meta_path)
    return meta


def load_checkpoint(
    model_dir: str | Path,
    expected_classes: Sequence[str] | None = None,
    expected_backbone: str | None = None,
) -> tuple[nn.Module, ModelMeta]:
    """Rebuild the model saved in ``model_dir`` in eval mode, with its metadata.

    ``expected_classes`` / ``expected_backbone``, when given, must match the checkpoint exactly (same
    classes in the same order), since a model's outputs mean nothing under another class list.
    """
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    if expected_backbone is not None and meta.backbone != expected_backbone:
        raise BadCheckpointError(
            f"checkpoint is a {meta.backbone} model, not the requested {expected_backbone}", model_dir
        )
    if expected_classes is not None and tuple(expected_classes) != tuple(meta.classes):
        missing = [c for c in expected_classes if c not in meta.classes]
        extra = [c for c in meta.classes if c not in expected_classes]
        detail = (
            f"lacks {missing[:3]}" if missing else f"has extra {extra[:3]}" if extra else "orders them differently"
        )
        raise BadCheckpointError(
            f"checkpoint was trained on another class list ({len(meta.classes)} classes; it {detail})",
            model_dir,
        )
    weights_path = model_dir / WEIGHTS_FILE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unpickler's protocol notes; refusal is our message
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception:
        raise BadCheckpointError("not a PyTorch state dict (or one holding more than tensors)", weights_path) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadCheckpointError("not a state dict of tensors", weights_path)
    model = build_classifier(meta.backbone, len(meta.classes), pretrained=False)
    own = model.state_dict()
    if set(own) != set(state) or any(own[k].shape != state[k].shape for k in own):
        head_rows = [v.shape[0] for k, v in state.items() if k.endswith("weight") and v.ndim == 2][-1:]
        same_keys = set(own) == set(state)
        reason = (
            f"has {head_rows[0]} outputs but meta.json lists {len(meta.classes)} classes"
            if same_keys and head_rows
            else f"weights do not fit the {meta.backbone} architecture named in meta.json (another backbone)"
        )
        raise BadCheckpointError(reason, weights_path)
    model.load_state_dict(state)
    model.eval()
    return model, meta


def run_model_dir(run: RunDirectory | str | Path) -> Path:
    """The run's ``model/`` folder, or a sentence saying the run has no trained model yet and how to make one.

    Every command that uses the run's classifier (explain, sanity, evaluate-classifier, evaluate
    --faithfulness-images) asks here first, so they all answer a run without a model alike. A folder holding
    neither checkpoint file (e.g. only the state of an interrupted training) is no model yet either; one
    holding only one of them is a damaged checkpoint, which ``read_meta`` describes.
    """
    run = run if isinstance(run, RunDirectory) else RunDirectory(run)
    folder = run.model_dir
    empty = folder.is_dir() and not (folder / WEIGHTS_FILE).exists() and not (folder / META_FILE).exists()
    if not folder.exists() or empty:
        raise BadCheckpointError(
            f"the run has no trained model yet; make one with `iconolens train --run {shlex.quote(str(run.root))}`",
            folder,
        )
    return folder


def read_run_meta(run: RunDirectory | str | Path) -> ModelMeta:
    """The metadata of the run's model (``read_meta`` of ``run_model_dir``)."""
    return read_meta(run_model_dir(run))


def load_run_model(
    run: RunDirectory | str | Path, expected_classes: Sequence[str] | None = None
) -> tuple[nn.Module, ModelMeta]:
    """The run's model in eval mode, with its metadata (``load_checkpoint`` of ``run_model_dir``)."""
    return load_checkpoint(run_model_dir(run), expected_classes=expected_classes)
