"""What a checkpoint says about its model: classes, backbone, input size, normalisation, task."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Task = Literal["multiclass", "multilabel"]
Mode = Literal["off-the-shelf", "fine-tune", "scratch"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelMeta:
    """Metadata stored beside the weights as JSON; enough to rebuild the model and its preprocessing."""

    classes: tuple[str, ...]
    backbone: str
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    task: Task = "multiclass"
    mode: Mode = "fine-tune"
    thresholds: tuple[float, ...] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelMeta":
        data = dict(data)
        for key in ("classes", "mean", "std"):
            data[key] = tuple(data[key])
        if data.get("thresholds") is not None:
            data["thresholds"] = tuple(data["thresholds"])
        return cls(**data)
