"""Tables for people and programs: CSV files and Markdown tables, written atomically."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from iconolens.atomic import write_text_atomically
from iconolens.evaluate.declarations import MetricDeclaration


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as CSV text; columns default to the keys of the first row, in order."""
    if columns is None:
        columns = list(rows[0]) if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    return write_text_atomically(path, csv_text(rows, columns))


def _cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[MetricDeclaration],
    first: tuple[str, str] = ("method", "Method"),
    extra: Sequence[tuple[str, str]] = (),
    digits: int = 3,
) -> str:
    """A Markdown table with one row per item and one column per declared metric (titles from the
    declarations, with an arrow for the better direction), then any ``extra`` (key, title) columns."""
    header = [first[1]] + [f"{m.title} {'↑' if m.higher_is_better else '↓'}" for m in metrics]
    header += [title for _, title in extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row.get(first[0], ""))]
        cells += [_cell(row.get(m.key), 2 if m.value_range[1] > 1 else digits) for m in metrics]
        cells += [_cell(row.get(key), digits) for key, _ in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
