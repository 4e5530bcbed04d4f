"""Choosing a saliency method's parameters by how well its maps localise expert boxes.

Smooth Grad-CAM++ has two: the noise's standard deviation sigma and the number of noisy samples n. The
thesis searched sigma in {0.25, 0.5, 1} and n in {5, 10, 25} and reported the best and worst setting by the
peak of the component IoU curve; :func:`smooth_gradcampp_grid_search` does the same on any model and
collection, and :func:`grid_search_maps` on any map-producing function.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from iconolens.data.records import Level, Sample
from iconolens.evaluate.declarations import COMPONENT_IOU, LOCALISATION_METRICS
from iconolens.evaluate.localisation import (
    THRESHOLDS,
    LocalisationReport,
    image_size_of,
    localisation_report,
    measure_sample,
)

SIGMAS: tuple[float, ...] = (0.25, 0.5, 1.0)
SAMPLE_COUNTS: tuple[int, ...] = (5, 10, 25)


@dataclass(frozen=True)
class GridSetting:
    """One parameter setting, its name in the report, and its peak of the chosen metric."""

    name: str
    params: dict[str, Any]
    peak: float
    peak_threshold: float


@dataclass(frozen=True)
class GridSearchResult:
    """Every setting's curves (``report``, one "method" per setting) and the settings ranked by ``metric``."""

    metric: str
    settings: tuple[GridSetting, ...]
    report: LocalisationReport

    @property
    def ranked(self) -> list[GridSetting]:
        higher = next(m for m in LOCALISATION_METRICS if m.key == self.metric).higher_is_better
        finite = [s for s in self.settings if s.peak == s.peak]
        return sorted(finite, key=lambda s: s.peak, reverse=higher)

    @property
    def best(self) -> GridSetting:
        return self.ranked[0]

    @property
    def worst(self) -> GridSetting:
        return self.ranked[-1]

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "settings": [
                {"name": s.name, "params": s.params, "peak": s.peak, "peak_threshold": s.peak_threshold}
                for s in self.settings
            ],
            "best": self.best.name if self.ranked else None,
            "worst": self.worst.name if self.ranked else None,
        }


def setting_name(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def grid_search_maps(
    explain: Callable[[dict[str, Any]], np.ndarray | torch.Tensor],
    grid: Sequence[dict[str, Any]],
    samples: Sequence[Sample],
    classes: Sequence[str],
    level: Level = "attribute",
    metric: str = COMPONENT_IOU.key,
    thresholds: np.ndarray = THRESHOLDS,
) -> GridSearchResult:
    """Measure the maps ``explain(params)`` gives (raw ``(N, C, h, w)``, aligned with ``samples``) for every
    setting of ``grid``, and rank the settings by the peak of ``metric`` over the threshold sweep."""
    sizes = [image_size_of(s) for s in samples]
    items = []
    names = []
    for params in grid:
        name = setting_name(params)
        names.append(name)
        raw = explain(dict(params))
        raw = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
        if raw.shape[0] != len(samples):
            raise ValueError(f"setting {name} gave maps for {raw.shape[0]} images, expected {len(samples)}")
        for sample, maps, size in zip(samples, raw, sizes):
            measured, _ = measure_sample(sample, maps, classes, level, thresholds, size)
            items.extend((name, cls, labels, result) for cls, labels, result in measured)
    report = localisation_report(items, level, thresholds, {n: {} for n in names})
    settings = []
    for name, params in zip(names, grid):
        peak, at = report.peak(name, metric)
        settings.append(GridSetting(name, dict(params), peak, at))
    return GridSearchResult(metric, tuple(settings), report)


def smooth_gradcampp_grid_search(
    model: torch.nn.Module,
    images: torch.Tensor,
    samples: Sequence[Sample],
    classes: Sequence[str],
    level: Level = "attribute",
    sigmas: Sequence[float] = SIGMAS,
    sample_counts: Sequence[int] = SAMPLE_COUNTS,
    metric: str = COMPONENT_IOU.key,
    **params: Any,
) -> GridSearchResult:
    """The thesis's grid search of Smooth Grad-CAM++ over sigma x n on ``images`` (model inputs aligned
    with ``samples``, whose boxes are in original image pixels); extra ``params`` go to the method."""
    from iconolens.explain import explain_maps  # type: ignore[attr-defined]

    def explain(setting: dict[str, Any]) -> torch.Tensor:
        return explain_maps(model, images, "smoothgradcampp", sigma=setting["sigma"], n=setting["n"],
                            **params).raw

    grid = [{"sigma": s, "n": n} for s, n in itertools.product(sigmas, sample_counts)]
    return grid_search_maps(explain, grid, samples, classes, level, metric)
