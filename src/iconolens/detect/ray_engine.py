"""``detect eval`` and ``detect explain`` on Ray: each actor opens its own copy of the detector.

Detection: the collection's samples are cut into batches in order, each actor runs
:func:`~iconolens.detect.evaluation.detect_samples` on its batches, and the driver gathers the boxes in the
collection's order and scores them once, exactly as the in-process engine does.

D-RISE: each image is one call (an image's masks are thousands of detector passes, so there is nothing to gain
from batching images); the actor writes the image's folder with the same atomic writes and returns its record and
its targets' cropped maps, which the driver averages. A retried call rewrites the same files, whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iconolens.data.records import Dataset, Sample
from iconolens.detect.evaluation import ScoredBox, detect_samples, gathered
from iconolens.detect.explanations import DriseSettings, GivenBox, explain_image, write_average_saliency
from iconolens.detect.source import DetectorSource
from iconolens.ray_pool import actor_gpus, import_ray, map_on_actors


class DetectActor:
    """Holds one detector and finds the boxes of whole batches of samples."""

    def __init__(self, source: DetectorSource, device: str) -> None:
        self.detector, self.min_size, self.max_size = source.open(0.0, device)

    def run(self, samples: list[Sample]) -> list[list[ScoredBox] | None]:
        return detect_samples(self.detector, samples, self.min_size, self.max_size, show_progress=False)


def detect_collection_on_ray(
    source: DetectorSource,
    dataset: Dataset,
    batch_size: int = 8,
    device: str = "cpu",
    address: str | None = None,
    workers: int | None = None,
) -> tuple[list[list[ScoredBox]], list[str]]:
    """Like :func:`~iconolens.detect.evaluation.detect_collection`, over Ray actors (one per CPU, or ``workers``)."""
    import_ray()
    samples = list(dataset.samples)
    batches = [samples[i:i + batch_size] for i in range(0, len(samples), batch_size)]
    replies = map_on_actors(DetectActor, (source, device), batches, address=address, workers=workers,
                            gpus_per_actor=actor_gpus(device))
    return gathered(dataset, [boxes for reply in replies for boxes in reply])


class DriseActor:
    """Holds one detector and explains one image per call into the output folder."""

    def __init__(self, source: DetectorSource, out: str, settings: DriseSettings, given: Sequence[GivenBox],
                 min_score: float, device: str) -> None:
        self.detector, self.min_size, self.max_size = source.open(0.0, device)
        self.out, self.settings, self.given, self.min_score = Path(out), settings, list(given), min_score

    def run(self, path: str) -> tuple[dict[str, Any], list[np.ndarray]]:
        return explain_image(self.detector, Path(path), self.out, self.settings, self.given, self.min_score,
                             self.min_size, self.max_size)


def explain_images_on_ray(
    source: DetectorSource,
    images: Sequence[Path],
    out: Path,
    settings: DriseSettings = DriseSettings(),
    given: Sequence[GivenBox] = (),
    min_score: float = 0.5,
    device: str = "cpu",
    address: str | None = None,
    workers: int | None = None,
) -> list[dict[str, Any]]:
    """Like :func:`~iconolens.detect.explanations.explain_images`, one image per call over Ray actors."""
    import_ray()
    replies = map_on_actors(DriseActor, (source, str(out), settings, list(given), min_score, device),
                            [str(path) for path in images], address=address, workers=workers,
                            gpus_per_actor=actor_gpus(device))
    write_average_saliency(out, [crop for _, crops in replies for crop in crops])
    return [record for record, _ in replies]
