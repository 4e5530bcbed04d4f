"""A trained detector on disk: ``weights.pt`` (state dict, loaded as data only) and ``detector.json``."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchvision.models.detection import FasterRCNN

from iconolens.atomic import write_bytes_atomically, write_json_atomically
from iconolens.detect.faster_rcnn import DEFAULT_BACKBONE, FasterRCNNDetector, build_faster_rcnn
from iconolens.errors import BadCheckpointError
from iconolens.inference import network_on

WEIGHTS = "weights.pt"
META = "detector.json"


@dataclass(frozen=True)
class DetectorMeta:
    """Enough to rebuild the detector: its object classes (background excluded), backbone and input sizes."""

    classes: tuple[str, ...]
    backbone: str = DEFAULT_BACKBONE
    min_size: int = 320
    max_size: int = 512
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DetectorMeta":
        data = dict(data)
        data["classes"] = tuple(data["classes"])
        return cls(**data)


def save_detector(model_dir: str | Path, model: FasterRCNN, meta: DetectorMeta) -> Path:
    """Write weights then metadata atomically; the metadata last, so a present ``detector.json`` means complete."""
    model_dir = Path(model_dir)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_bytes_atomically(model_dir / WEIGHTS, buffer.getvalue())
    write_json_atomically(model_dir / META, meta.to_json())
    return model_dir


def load_detector(model_dir: str | Path, min_score: float = 0.0) -> tuple[FasterRCNNDetector, DetectorMeta]:
    """The detector saved in ``model_dir``, in eval mode, as a Detector-protocol adapter, prepared for inference
    (``iconolens.inference``)."""
    model_dir = Path(model_dir)
    meta_path, weights_path = model_dir / META, model_dir / WEIGHTS
    if not meta_path.is_file() or not weights_path.is_file():
        raise BadCheckpointError(f"not a detector folder (needs {META} and {WEIGHTS})", model_dir)
    try:
        meta = DetectorMeta.from_json(json.loads(meta_path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError) as exc:
        raise BadCheckpointError(f"detector metadata is unreadable ({exc})", meta_path) from None
    model = build_faster_rcnn(
        len(meta.classes), meta.backbone, backbone_weights=False, min_size=meta.min_size, max_size=meta.max_size
    )
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # torch raises several types for foreign or truncated files
        raise BadCheckpointError(f"weights do not fit a {len(meta.classes)}-class detector ({str(exc).splitlines()[0]})", weights_path) from None
    # Loaded to detect, never to train: the backbone's frozen batch norms fold into its convolutions.
    model.backbone = network_on(model.backbone, torch.device("cpu"), meta.min_size)
    return FasterRCNNDetector(model.to(memory_format=torch.channels_last), meta.classes, min_score=min_score), meta
