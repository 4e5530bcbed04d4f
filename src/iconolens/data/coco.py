"""COCO JSON collections: reading detection-style files and writing files pycocotools loads back.

Conventions beyond plain COCO (all optional on reading):
- a category may carry ``"level": "figure" | "attribute"``; without it a name containing ``" - "``
  (``"keys - Peter"``) is an attribute;
- an image may carry ``"labels": [...]`` (its image-level labels; otherwise the figure classes of its
  boxes), ``"split"`` and ``"sample_id"``;
- an annotation may carry ``"difficult": true``;
- the top level may carry ``"classes"`` (the ordered class list) and ``"multi_label"``.

A structural error (malformed JSON, missing keys, duplicate ids, an annotation of an image that does
not exist) makes the whole file unusable. A problem confined to one image (missing or unreadable file,
a box outside the picture or with no area, an unknown category) skips that image and is listed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iconolens.atomic import write_json_atomically
from iconolens.data.boxes import checked_boxes
from iconolens.data.headers import read_headers
from iconolens.data.images import DEFAULT_MAX_PIXELS, ImageHeader, probe_image
from iconolens.data.records import ATTRIBUTE_SEPARATOR, Box, Dataset, Level, Problem, Sample
from iconolens.errors import BadAnnotationError, BadImageError, BadInputError

LEVELS: tuple[Level, ...] = ("figure", "attribute")


def read_json_file(path: Path, what: str) -> Any:
    """Parse a JSON file, turning a missing file or a syntax error into one sentence."""
    if not path.is_file():
        raise BadInputError(f"{what} does not exist", path)
    return parse_json_bytes(path.read_bytes(), what, path)


def parse_json_bytes(raw: bytes, what: str, where: str | Path) -> Any:
    """The JSON document in ``raw`` (a file's or a download's bytes), or one sentence naming ``where``."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadAnnotationError(f"{what} is not UTF-8 text", where) from None
    if not text.strip():
        raise BadAnnotationError(f"{what} is empty", where)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadAnnotationError(
            f"malformed JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}): this {what} is not JSON", where
        ) from None


def _list_of_objects(data: Mapping[str, Any], key: str, path: Path, required: bool) -> list[dict]:
    if key not in data:
        if required:
            raise BadAnnotationError(f"COCO file has no {key!r} list", path)
        return []
    items = data[key]
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise BadAnnotationError(f"{key!r} must be a list of objects", path)
    return items


def _field(item: dict, key: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    if key not in item:
        raise BadAnnotationError(f"{where} has no {key!r}", path)
    value = item[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadAnnotationError(f"{where} has an invalid {key!r}: {value!r}", path)
    return value


def _categories(data: dict, path: Path) -> dict[Any, tuple[str, Level]]:
    categories: dict[Any, tuple[str, Level]] = {}
    for index, item in enumerate(_list_of_objects(data, "categories", path, required=True)):
        where = f"category #{index + 1}"
        cid = _field(item, "id", (int, str), where, path)
        name = _field(item, "name", str, where, path)
        level = item.get("level")
        if level is None:
            level = "attribute" if ATTRIBUTE_SEPARATOR in name else "figure"
        if level not in LEVELS:
            raise BadAnnotationError(f"category {name!r} has level {level!r}, expected figure or attribute", path)
        if cid in categories:
            raise BadAnnotationError(f"category id {cid!r} is used twice", path)
        categories[cid] = (name, level)
    return categories


def _resolve_image(base: Path, file_name: str) -> Path:
    candidate = Path(file_name)
    if candidate.is_absolute():
        return candidate
    direct = base / candidate
    if not direct.exists() and (base / "images" / candidate).exists():
        return base / "images" / candidate
    return direct


def _bbox(annotation: dict, where: str, path: Path) -> tuple[float, float, float, float]:
    bbox = annotation.get("bbox")
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    ):
        raise BadAnnotationError(f"{where} has no valid 'bbox' [x, y, width, height]: {bbox!r}", path)
    x, y, w, h = (float(v) for v in bbox)
    return x, y, x + w, y + h


def read_coco(
    path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, decode: bool = False
) -> Dataset:
    """The collection a COCO JSON file describes (see the module notes for the conventions)."""
    path = Path(path)
    data = read_json_file(path, "COCO file")
    if not isinstance(data, dict):
        raise BadAnnotationError("COCO file must hold a JSON object", path)
    categories = _categories(data, path)
    base = path.parent

    images: dict[Any, dict] = {}
    file_names: set[str] = set()
    for index, item in enumerate(_list_of_objects(data, "images", path, required=True)):
        where = f"image #{index + 1}"
        iid = _field(item, "id", (int, str), where, path)
        file_name = _field(item, "file_name", str, where, path)
        if iid in images:
            raise BadAnnotationError(f"image id {iid!r} is used twice", path)
        if file_name in file_names:
            raise BadAnnotationError(f"image file {file_name!r} is listed twice", path)
        labels = item.get("labels")
        if labels is not None and (
            not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)
        ):
            raise BadAnnotationError(f"image {file_name!r} has 'labels' that are not a list of names", path)
        images[iid] = item
        file_names.add(file_name)

    boxes: dict[Any, list[Box]] = {iid: [] for iid in images}
    image_problems: dict[Any, str] = {}
    annotation_ids: set[Any] = set()
    for index, ann in enumerate(_list_of_objects(data, "annotations", path, required=False)):
        where = f"annotation #{index + 1}"
        aid = _field(ann, "id", (int, str), where, path)
        if aid in annotation_ids:
            raise BadAnnotationError(f"annotation id {aid!r} is used twice", path)
        annotation_ids.add(aid)
        where = f"annotation {aid!r}"
        iid = _field(ann, "image_id", (int, str), where, path)
        if iid not in images:
            raise BadAnnotationError(f"{where} refers to image id {iid!r}, which is not listed", path)
        cid = ann.get("category_id")
        x0, y0, x1, y1 = _bbox(ann, where, path)
        if cid not in categories:
            image_problems.setdefault(iid, f"{where} has unknown category id {cid!r}")
            continue
        name, level = categories[cid]
        difficult = bool(ann.get("difficult", False) or ann.get("ignore", False))
        boxes[iid].append(Box(x0, y0, x1, y1, label=name, level=level, difficult=difficult))

    declared = data.get("classes")
    if declared is not None and (
        not isinstance(declared, list) or not all(isinstance(x, str) for x in declared)
    ):
        raise BadAnnotationError("'classes' must be a list of names", path)

    ordered = list(images.items())
    image_paths = [_resolve_image(base, item["file_name"]) for _, item in ordered]
    headers = read_headers(image_paths, max_pixels=max_pixels, decode=decode)

    drafts: list[tuple[dict, Path, ImageHeader, tuple[Box, ...], tuple[str, ...]]] = []
    problems: list[Problem] = []
    for (iid, item), image_path, header in zip(ordered, image_paths, headers):
        if isinstance(header, Problem):
            problems.append(Problem(header.path, f"{header.message} (image {item['file_name']!r} of {path})"))
            continue
        if iid in image_problems:
            problems.append(Problem(str(image_path), f"{image_problems[iid]} in {path}; image skipped"))
            continue
        width, height = item.get("width"), item.get("height")
        if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
            if (width, height) != (header.width, header.height):
                problems.append(
                    Problem(
                        str(image_path),
                        f"{path} gives its size as {width}x{height} but the image is "
                        f"{header.width}x{header.height}; image skipped",
                    )
                )
                continue
        kept, box_problem = checked_boxes(boxes[iid], header.width, header.height)
        if box_problem is not None:
            problems.append(Problem(str(image_path), f"{box_problem} (in {path}); image skipped"))
            continue
        if item.get("labels") is not None:
            labels = tuple(dict.fromkeys(item["labels"]))
        else:
            labels = tuple(dict.fromkeys(b.figure_class for b in kept))
        drafts.append((item, image_path, header, kept, labels))

    if declared is not None:
        classes = tuple(dict.fromkeys(declared))
        unknown = sorted({lab for *_, labels in drafts for lab in labels} - set(classes))
        if unknown:
            raise BadAnnotationError(f"labels {unknown} are not among the file's 'classes'", path)
    elif any(item.get("labels") is not None for item in images.values()):
        classes = tuple(sorted({lab for *_, labels in drafts for lab in labels}))
    else:
        from_categories = [
            name if level == "figure" else name.split(ATTRIBUTE_SEPARATOR, 1)[-1]
            for name, level in categories.values()
        ]
        classes = tuple(dict.fromkeys(from_categories))
    rank = {c: i for i, c in enumerate(classes)}

    sample_ids: dict[str, str] = {}
    for item in images.values():
        sid = str(item.get("sample_id") or item["file_name"])
        if sid in sample_ids:
            raise BadAnnotationError(
                f"images {sample_ids[sid]!r} and {item['file_name']!r} have the same sample_id {sid!r}", path
            )
        sample_ids[sid] = item["file_name"]

    samples = []
    for item, image_path, header, kept, labels in drafts:
        split = item.get("split")
        samples.append(
            Sample(
                id=str(item.get("sample_id") or item["file_name"]),
                path=image_path.resolve(),
                labels=tuple(sorted(labels, key=lambda c: rank.get(c, len(rank)))),
                boxes=kept,
                width=header.width,
                height=header.height,
                split=split if isinstance(split, str) else None,
            )
        )
    multi_label = data.get("multi_label")
    if not isinstance(multi_label, bool):
        multi_label = any(len(s.labels) != 1 for s in samples)
    return Dataset(
        samples=tuple(samples), classes=classes, multi_label=multi_label, root=base.resolve(),
        problems=tuple(problems),
    )


def _category_names(dataset: Dataset) -> list[tuple[str, Level]]:
    figures = list(dataset.classes)
    known = set(figures)
    extra_figures = sorted({b.label for s in dataset.samples for b in s.boxes if b.level == "figure"} - known)
    attributes = sorted({b.label for s in dataset.samples for b in s.boxes if b.level == "attribute"})
    return [(n, "figure") for n in figures + extra_figures] + [(n, "attribute") for n in attributes]


def _file_name(image: Path, base: Path) -> str:
    try:
        relative = os.path.relpath(image.resolve(), base.resolve())
    except ValueError:  # another drive on Windows
        return str(image)
    return Path(relative).as_posix() if not relative.startswith("..") else str(image.resolve())


def _size(sample: Sample) -> tuple[int | None, int | None]:
    if sample.width is not None and sample.height is not None:
        return sample.width, sample.height
    try:
        header = probe_image(sample.path, max_pixels=None)
    except BadImageError:
        return None, None
    return header.width, header.height


def coco_document(dataset: Dataset, path: str | Path) -> dict[str, Any]:
    """The COCO JSON object ``write_coco`` writes to ``path`` (file names relative to its folder)."""
    base = Path(path).parent
    categories = _category_names(dataset)
    category_id = {name: i + 1 for i, (name, _) in enumerate(categories)}
    images, annotations = [], []
    for image_id, sample in enumerate(dataset.samples, start=1):
        width, height = _size(sample)
        entry: dict[str, Any] = {
            "id": image_id,
            "file_name": _file_name(sample.path, base),
            "sample_id": sample.id,
            "labels": list(sample.labels),
        }
        if width is not None:
            entry["width"], entry["height"] = width, height
        if sample.split is not None:
            entry["split"] = sample.split
        images.append(entry)
        for box in sample.boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id[box.label],
                    "bbox": [box.x0, box.y0, box.width, box.height],
                    "area": box.area,
                    "iscrowd": 0,
                    "difficult": box.difficult,
                }
            )
    return {
        "info": {"description": "collection written by iconolens"},
        "licenses": [],
        "classes": list(dataset.classes),
        "multi_label": dataset.multi_label,
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": category_id[name], "name": name, "level": level, "supercategory": level}
            for name, level in categories
        ],
    }


def write_coco(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` as COCO JSON at ``path`` (atomically); pycocotools' ``COCO(path)`` reads it."""
    return write_json_atomically(path, coco_document(dataset, path))
