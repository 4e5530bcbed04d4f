"""The run's ``dataset.json``: one normalised copy of the collection every later stage reads.

Image paths are stored absolute so the run directory can be read from anywhere; boxes are half-open
pixel boxes in the original image's coordinates, as in ``records``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iconolens.atomic import write_json_atomically
from iconolens.data.coco import read_json_file
from iconolens.data.records import Box, Canvas, Dataset, Problem, Sample
from iconolens.errors import BadAnnotationError

FORMAT = "iconolens-dataset"
VERSION = 1


def _box_to_json(box: Box) -> dict[str, Any]:
    return {
        "xyxy": [box.x0, box.y0, box.x1, box.y1],
        "label": box.label,
        "level": box.level,
        "difficult": box.difficult,
    }


def dataset_to_json(dataset: Dataset) -> dict[str, Any]:
    """The JSON object ``save_dataset_json`` writes."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "root": None if dataset.root is None else str(Path(dataset.root).resolve()),
        "classes": list(dataset.classes),
        "multi_label": dataset.multi_label,
        "samples": [
            {
                "id": s.id,
                "path": str(Path(s.path).resolve()),
                "labels": list(s.labels),
                "width": s.width,
                "height": s.height,
                "split": s.split,
                "boxes": [_box_to_json(b) for b in s.boxes],
                **({} if s.canvas is None else {"canvas": {
                    "id": s.canvas.id, "width": s.canvas.width, "height": s.canvas.height,
                    "manifest": s.canvas.manifest,
                }}),
            }
            for s in dataset.samples
        ],
        "problems": [{"path": p.path, "message": p.message} for p in dataset.problems],
    }


def save_dataset_json(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` to ``path`` atomically (a crash leaves the previous file intact)."""
    return write_json_atomically(path, dataset_to_json(dataset))


def _box_from_json(item: Any) -> Box:
    x0, y0, x1, y1 = (float(v) for v in item["xyxy"])
    level = item.get("level", "figure")
    if level not in ("figure", "attribute"):
        raise ValueError(f"unknown box level {level!r}")
    return Box(x0, y0, x1, y1, label=str(item["label"]), level=level, difficult=bool(item.get("difficult")))


def _canvas_from_json(item: Any) -> Canvas | None:
    if item is None:
        return None
    manifest = item.get("manifest")
    return Canvas(str(item["id"]), int(item["width"]), int(item["height"]), None if manifest is None else str(manifest))


def dataset_from_json(data: Any, path: Path) -> Dataset:
    """Rebuild a Dataset from the object ``dataset_to_json`` made; ``path`` names the file in errors."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadAnnotationError(f"not an iconolens dataset file (no \"format\": \"{FORMAT}\")", path)
    if data.get("version") != VERSION:
        raise BadAnnotationError(f"dataset file version {data.get('version')!r} is not {VERSION}", path)
    try:
        samples = []
        seen: set[str] = set()
        for item in data["samples"]:
            sid = str(item["id"])
            if sid in seen:
                raise BadAnnotationError(f"sample id {sid!r} is used twice", path)
            seen.add(sid)
            samples.append(
                Sample(
                    id=sid,
                    path=Path(item["path"]),
                    labels=tuple(str(x) for x in item["labels"]),
                    boxes=tuple(_box_from_json(b) for b in item.get("boxes", [])),
                    width=None if item.get("width") is None else int(item["width"]),
                    height=None if item.get("height") is None else int(item["height"]),
                    split=item.get("split"),
                    canvas=_canvas_from_json(item.get("canvas")),
                )
            )
        problems = tuple(Problem(str(p["path"]), str(p["message"])) for p in data.get("problems", []))
        classes = tuple(str(c) for c in data["classes"])
        root = data.get("root")
        return Dataset(
            samples=tuple(samples),
            classes=classes,
            multi_label=bool(data["multi_label"]),
            root=None if root is None else Path(root),
            problems=problems,
        )
    except BadAnnotationError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise BadAnnotationError(f"dataset file is damaged ({type(exc).__name__}: {exc})", path) from None


def load_dataset_json(path: str | Path) -> Dataset:
    """The Dataset ``save_dataset_json`` wrote to ``path``."""
    path = Path(path)
    return dataset_from_json(read_json_file(path, "dataset file"), path)


def is_dataset_json(path: Path) -> bool:
    """Whether ``path`` is a JSON file written by ``save_dataset_json`` (checked from its first bytes)."""
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    with path.open("rb") as handle:
        head = handle.read(256)
    return f'"format": "{FORMAT}"'.encode() in head
