"""A detector's reports as viewer records: each image's detections, missed objects and their D-RISE maps.

Two folders are understood: the failure report of ``iconolens detect eval --failures`` (``failures.json``,
``images.json`` and raw maps) and the output of ``iconolens detect explain`` (one subfolder per image with
``explanation.json`` and ``maps.npy``). A map's target is one explained box, named after what it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from iconolens.data.images import image_size
from iconolens.errors import BadInputError, IconolensError
from iconolens.viewer.content import BoxRow, MapSet, Measure, ViewerHeader, ViewerImage

METHOD = "drise"
FAILURE_MEASURES = (
    Measure("false_positives", "false positives (detections matching no expert box)", False),
    Measure("missed", "missed objects (expert boxes no detection found)", False),
)
EXPLANATION_MEASURES = (
    Measure("pointing_game", "pointing game: share of explained boxes holding their map's peak", True),
    Measure("deletion_auc", "deletion area (lower: the map found what the detector needs)", False),
    Measure("insertion_auc", "insertion area (higher: the map found what the detector needs)", True),
)


def is_failure_report(folder: Path) -> bool:
    return (folder / "failures.json").is_file() and (folder / "images.json").is_file()


def is_explanation_folder(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*/explanation.json"))


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError("file is missing", path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"not valid JSON ({exc})", path) from None


def _maps(path: Path, count: int) -> np.ndarray | None:
    """The ``(count, h, w)`` maps in ``path``, or None when the file is missing or does not hold them."""
    try:
        maps = np.load(path).astype(np.float32)
    except (OSError, ValueError):
        return None
    return maps if maps.ndim == 3 and len(maps) == count else None


def _best_scores(classes: tuple[str, ...], detections: list[BoxRow]) -> tuple[float, ...]:
    """Per class, the highest score of a detection of it (0 when none): the detector's 'probabilities'."""
    best = dict.fromkeys(classes, 0.0)
    for *_, label, score in detections:
        if label in best:
            best[label] = max(best[label], float(score))
    return tuple(best.values())


def _label(kind: str, label: str, score: float | None) -> str:
    return f"{kind}: {label}" + ("" if score is None else f" ({score:.2f})")


def failure_report_content(folder: Path) -> tuple[ViewerHeader, list[ViewerImage]]:
    """The images of a failure report, each with its false positives and missed objects as map targets."""
    info, failures = _json(folder / "images.json"), _json(folder / "failures.json")
    try:
        classes = tuple(str(c) for c in info["classes"])
        entries = list(info["images"])
        by_image: dict[str, list[dict[str, Any]]] = {}
        for item in failures:
            by_image.setdefault(str(item["sample_id"]), []).append(item)
    except (KeyError, TypeError):
        raise BadInputError("not a failure report written by `iconolens detect eval --failures`", folder) from None
    notes: list[str] = []
    images = []
    for entry in entries:
        try:
            sample_id = str(entry["id"])
            detections = [(*(float(v) for v in d[:4]), str(d[4]), round(float(d[5]), 4)) for d in entry["detections"]]
            truth = [(*(float(v) for v in t[:4]), str(t[4]), "figure") for t in entry["truth"]]
            items = by_image.get(sample_id, [])
            targets = tuple(_label(f["kind"], f["label"], f["score"]) for f in items)
            target_boxes = tuple((*f["box"], f["label"], f["kind"]) for f in items)
            map_file = items[0]["map_file"] if items else ""
        except (KeyError, TypeError, ValueError, IndexError):
            raise BadInputError("an image entry lacks its id, detections or expert boxes", folder / "images.json") \
                from None
        maps: dict[str, MapSet] = {}
        raw = _maps(folder / map_file, len(items)) if map_file else None
        if raw is not None:
            order = [int(f.get("map_index", k)) for k, f in enumerate(items)]
            maps[METHOD] = MapSet(targets, raw[order], target_boxes)
        elif items:
            notes.append(f"{sample_id}: no raw maps beside the report (written by an older version?)")
        kinds = [f["kind"] for f in items]
        flags = {"wrong"} if "false positive" in kinds else set()
        if "missed" in kinds:
            flags.add("missed")
        labels = tuple(dict.fromkeys([t[4] for t in truth] + [str(x) for x in entry.get("labels", [])]))
        images.append(ViewerImage(
            id=sample_id, path=Path(entry["file"]), width=int(entry["width"]), height=int(entry["height"]),
            split=entry.get("split"), labels=labels, probabilities=_best_scores(classes, detections),
            predicted=tuple(dict.fromkeys(d[4] for d in detections)), outcome=frozenset(flags or {"correct"}),
            expert_boxes=tuple(truth), stored_boxes={"detections": tuple(detections)}, maps=maps,
            measures={"false_positives": float(kinds.count("false positive")), "missed": float(kinds.count("missed"))},
        ))
    header = ViewerHeader(title=f"Detector failures: {folder.name}", kind="detector", classes=classes,
                          methods=(METHOD,), measures=FAILURE_MEASURES, notes=tuple(notes))
    return header, images


def _explanations(folder: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(folder.glob("*/explanation.json")):
        yield path.parent, _json(path)


def explanation_content(folder: Path) -> tuple[ViewerHeader, list[ViewerImage]]:
    """The images ``iconolens detect explain`` explained, each explained box a map target."""
    images, classes, notes = [], [], []
    for sub, data in _explanations(folder):
        try:
            path = Path(data["image"])
            entries = list(data["targets"])
            boxes = [(*(float(v) for v in t["box"]), str(t["label"]), t.get("score")) for t in entries]
        except (KeyError, TypeError, ValueError):
            raise BadInputError("not an explanation written by `iconolens detect explain`",
                                sub / "explanation.json") from None
        try:
            width, height = image_size(path)
        except IconolensError as exc:
            notes.append(str(exc))
            continue
        classes.extend(b[4] for b in boxes if b[4] not in classes)
        kind = "box" if all(b[5] is None for b in boxes) else "detection"
        targets = tuple(_label(f"{kind} {k + 1}", b[4], b[5]) for k, b in enumerate(boxes))
        raw = _maps(sub / "maps.npy", len(entries))
        maps = {METHOD: MapSet(targets, raw, tuple(boxes))} if raw is not None else {}
        per_target: dict[str, dict[str, float]] = {}
        measures: dict[str, float] = {}
        for measure in EXPLANATION_MEASURES:
            values = [float(t[measure.key]) for t in entries if isinstance(t.get(measure.key), (int, float))]
            for name, t in zip(targets, entries):
                if isinstance(t.get(measure.key), (int, float)):
                    per_target.setdefault(name, {})[measure.key] = round(float(t[measure.key]), 4)
            if values:
                measures[measure.key] = round(float(np.mean(values)), 4)
        detections = tuple(b for b in boxes if b[5] is not None)
        images.append(ViewerImage(
            id=sub.name, path=path, width=width, height=height, labels=tuple(dict.fromkeys(b[4] for b in boxes)),
            stored_boxes={"explained boxes": tuple(boxes)}, maps=maps, measures=measures,
            target_measures=per_target, predicted=tuple(dict.fromkeys(d[4] for d in detections)),
        ))
    if not images and not notes:
        raise BadInputError("no explanation.json in any subfolder: run `iconolens detect explain` first", folder)
    header = ViewerHeader(title=f"D-RISE explanations: {folder.name}", kind="detector", classes=tuple(classes),
                          methods=(METHOD,), measures=EXPLANATION_MEASURES, notes=tuple(notes))
    images = [_with_best_scores(image, header.classes) for image in images]
    return header, images


def _with_best_scores(image: ViewerImage, classes: tuple[str, ...]) -> ViewerImage:
    """The image with each class's best detection score as its probability (classes are known only at the end)."""
    rows = [b for rows in image.stored_boxes.values() for b in rows if b[5] is not None]
    return replace(image, probabilities=_best_scores(classes, rows) if rows else ())
