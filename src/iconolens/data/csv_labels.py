"""Reading a CSV of ``path,labels``: one image per row, labels separated by ``;`` (several = multi-label).

Paths are relative to the CSV's folder (absolute paths are kept). A first row ``path,labels`` is a header.
A row with an empty label field is an image showing none of the classes, so such a file is multi-label.
``labels_by_key`` reads the same layout keyed by something other than a path (a IIIF canvas id).
"""

from __future__ import annotations

import csv
from pathlib import Path

from iconolens.data.headers import read_headers
from iconolens.data.images import DEFAULT_MAX_PIXELS
from iconolens.data.records import Dataset, Problem, Sample
from iconolens.errors import BadAnnotationError, BadInputError

LABEL_SEPARATOR = ";"


def _rows(path: Path, key: str = "path") -> list[tuple[int, str, tuple[str, ...]]]:
    """``(line number, key, labels)`` per row; a first row ``<key>,labels`` is a header."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BadAnnotationError("CSV file is not UTF-8 text", path) from None
    rows: list[tuple[int, str, tuple[str, ...]]] = []
    try:
        reader = csv.reader(text.splitlines(), strict=True)
        for line_number, row in enumerate(reader, start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if line_number == 1 and [c.strip().lower() for c in row] == [key, "labels"]:
                continue
            if len(row) != 2:
                raise BadAnnotationError(
                    f"line {line_number} has {len(row)} fields, expected 2 ({key},labels)", path
                )
            image, labels = row[0].strip(), row[1]
            if not image:
                raise BadAnnotationError(f"line {line_number} has an empty {key}", path)
            names = tuple(dict.fromkeys(x.strip() for x in labels.split(LABEL_SEPARATOR) if x.strip()))
            rows.append((line_number, image, names))
    except csv.Error as exc:
        raise BadAnnotationError(f"malformed CSV ({exc})", path) from None
    return rows


def labels_by_key(path: str | Path, key: str) -> dict[str, tuple[str, ...]]:
    """The labels of each row of a ``<key>,labels`` CSV (e.g. ``canvas,labels``), keyed by its first column."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError("labels CSV does not exist", path)
    table: dict[str, tuple[str, ...]] = {}
    lines: dict[str, int] = {}
    for line_number, name, labels in _rows(path, key):
        if name in table:
            raise BadAnnotationError(f"{key} {name!r} is listed twice (lines {lines[name]} and {line_number})", path)
        table[name], lines[name] = labels, line_number
    return table


def read_csv(
    path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, decode: bool = False
) -> Dataset:
    """The collection a ``path,labels`` CSV describes; missing or unusable images are listed in ``problems``."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError("CSV file does not exist", path)
    rows = _rows(path)
    if not rows:
        raise BadAnnotationError("CSV file lists no images", path)
    base = path.parent
    seen: dict[str, int] = {}
    for line_number, image, _ in rows:
        if image in seen:
            raise BadAnnotationError(
                f"image {image!r} is listed twice (lines {seen[image]} and {line_number})", path
            )
        seen[image] = line_number
    image_paths = [(base / image) for _, image, _ in rows]
    headers = read_headers(image_paths, max_pixels=max_pixels, decode=decode)
    samples: list[Sample] = []
    problems: list[Problem] = []
    for (line_number, image, labels), image_path, header in zip(rows, image_paths, headers):
        if isinstance(header, Problem):
            problems.append(Problem(header.path, f"{header.message} (line {line_number} of {path})"))
            continue
        samples.append(
            Sample(
                id=Path(image).as_posix(),
                path=image_path.resolve(),
                labels=labels,
                width=header.width,
                height=header.height,
            )
        )
    multi_label = any(len(labels) != 1 for _, _, labels in rows)
    classes = tuple(sorted({label for sample in samples for label in sample.labels}))
    return Dataset(
        samples=tuple(samples), classes=classes, multi_label=multi_label, root=base.resolve(),
        problems=tuple(problems),
    )
