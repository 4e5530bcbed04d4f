"""Figures a person reads: metric-versus-threshold curves (one line per method), IoU histograms and the
similarity curves of the parameter randomisation test.

Heat maps over paintings, with expert and derived boxes, are drawn by ``iconolens.report.overlays``.

Titles, axis labels and the direction of "better" come from the metric declarations, so every metric is
drawn the same way. Files are PNG, written atomically; matplotlib runs without a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from iconolens.atomic import write_atomically  # noqa: E402
from iconolens.evaluate.declarations import MetricDeclaration  # noqa: E402

if TYPE_CHECKING:
    from iconolens.evaluate.localisation import LocalisationReport


def save_figure(figure: plt.Figure, path: str | Path) -> Path:
    """Save ``figure`` as PNG at ``path`` atomically and release it."""
    try:
        return write_atomically(path, lambda handle: figure.savefig(handle, format="png", dpi=120))
    finally:
        plt.close(figure)


def metric_curve(
    thresholds: np.ndarray,
    lines: Mapping[str, np.ndarray],
    metric: MetricDeclaration,
    path: str | Path,
    subtitle: str = "",
) -> Path:
    """One metric against the threshold, one line per method (NaN points are gaps)."""
    figure, axes = plt.subplots(figsize=(6.0, 4.0))
    for name, values in lines.items():
        axes.plot(thresholds, values, marker="o", markersize=3, linewidth=1.5, label=name)
    axes.set_xlabel("threshold t (foreground: normalised value >= t)")
    axes.set_ylabel(metric.axis_label)
    axes.set_title(metric.title + (f" — {subtitle}" if subtitle else ""))
    axes.set_xlim(float(thresholds[0]), float(thresholds[-1]))
    axes.set_ylim(*metric.value_range)
    axes.grid(True, alpha=0.3)
    if lines:
        axes.legend(fontsize="small")
    figure.tight_layout()
    return save_figure(figure, path)


def localisation_curves_figures(
    report: LocalisationReport,
    out_dir: str | Path,
    cls: str | None = None,
    prefix: str = "",
) -> list[Path]:
    """The four curves of a localisation report (overall, or of one class), one PNG per metric."""
    from iconolens.evaluate.localisation import ALL_CLASSES

    which = ALL_CLASSES if cls is None else cls
    out = []
    for metric in report.metrics:
        lines = {
            method: by_class[which][metric.key]
            for method, by_class in report.curves.items()
            if which in by_class
        }
        subtitle = f"{report.level} boxes" + ("" if cls is None else f", {cls}")
        out.append(metric_curve(report.thresholds, lines, metric, Path(out_dir) / f"{prefix}{metric.key}.png",
                                subtitle))
    return out


def iou_histogram(
    ious: Mapping[str, Sequence[float] | np.ndarray],
    path: str | Path,
    bins: int = 10,
    title: str = "IoU of derived boxes with expert boxes",
) -> Path:
    """Share of derived boxes per IoU bin, one group of bars per method (normalised per method)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    figure, axes = plt.subplots(figsize=(6.5, 4.0))
    width = (edges[1] - edges[0]) / max(len(ious), 1)
    for i, (name, values) in enumerate(ious.items()):
        values = np.asarray(values, dtype=np.float64)
        counts, _ = np.histogram(np.clip(values, 0.0, 1.0), bins=edges)
        share = counts / counts.sum() if counts.sum() else counts.astype(np.float64)
        axes.bar(edges[:-1] + i * width, share, width=width, align="edge", label=f"{name} (n={values.size})")
    axes.set_xlabel("IoU with the best-matching expert box")
    axes.set_ylabel("share of derived boxes")
    axes.set_xlim(0.0, 1.0)
    axes.set_title(title)
    axes.grid(True, axis="y", alpha=0.3)
    if ious:
        axes.legend(fontsize="small")
    figure.tight_layout()
    return save_figure(figure, path)


#: The reference method of the sanity checks that ignores the model (Sobel edges of the image).
REFERENCE_METHOD = "edges"


def randomisation_curves(
    steps: Sequence[str],
    lines: Mapping[str, Mapping[str, Sequence[float] | np.ndarray]],
    measures: Sequence[MetricDeclaration],
    path: str | Path,
    xlabel: str,
    title: str,
) -> Path:
    """One panel per similarity measure, x the randomisation steps, one line per method.

    ``lines[method][measure.key]`` holds a value per step. Each line starts from "original" at 1, the
    similarity of the trained model's map with itself, so the fall from it is what the eye reads.
    """
    columns = min(len(measures), 2) or 1
    rows = -(-len(measures) // columns) or 1
    figure, grid = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.6 * rows + 0.6), squeeze=False)
    positions = np.arange(len(steps) + 1)
    labels = ["original", *steps]
    for axes, measure in zip(grid.flat, measures):
        low = 0.0
        palette = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20").colors
        methods = [m for m in lines if m != REFERENCE_METHOD]
        for method, values in lines.items():
            series = np.concatenate([[1.0], np.asarray(values[measure.key], dtype=np.float64)])
            if method == REFERENCE_METHOD:  # the model-blind reference: black and dashed, never a method's colour
                style = dict(color="black", linestyle="--", marker="", linewidth=1.2)
            else:
                style = dict(color=palette[methods.index(method) % len(palette)], marker="o", markersize=3, linewidth=1.5)
            axes.plot(positions, series, label=method, **style)
            low = min(low, float(np.nanmin(series)))
        axes.set_title(measure.title, fontsize="medium")
        axes.set_ylim(max(measure.value_range[0], low - 0.05), measure.value_range[1] + 0.05)
        axes.set_xticks(positions)
        axes.set_xticklabels(labels, rotation=60 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center",
                             fontsize="small")
        axes.set_xlabel(xlabel, fontsize="small")
        axes.axhline(0.0, color="grey", linewidth=0.6)
        axes.grid(True, alpha=0.3)
    for axes in list(grid.flat)[len(measures):]:
        axes.axis("off")
    figure.suptitle(title)
    if lines:
        handles, names = grid.flat[0].get_legend_handles_labels()
        figure.legend(handles, names, loc="lower center", ncol=min(len(names), 6), fontsize="small", frameon=False)
        figure.tight_layout(rect=(0.0, 0.06, 1.0, 1.0))
    else:
        figure.tight_layout()
    return save_figure(figure, path)
