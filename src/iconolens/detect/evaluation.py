"""Scoring a detector on a collection: COCO average precision at IoU 0.5 and averaged over 0.5:0.95.

The numbers come from pycocotools (the reference implementation: 101-point interpolated precision, at most 100
detections per image), fed with the collection's boxes as ground truth and the detector's boxes as results.
Boxes marked difficult (People-Art, Pascal VOC) are neither required nor penalised, as in the VOC protocol those
collections were published with: they enter as COCO crowd regions, so a detection lying on one is ignored.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from iconolens.data.images import load_image
from iconolens.data.records import Box, Dataset, Sample
from iconolens.data.stream import prepared_ahead
from iconolens.detect.detections import Detections, Detector
from iconolens.errors import BadInputError
from iconolens.progress import progress


@dataclass(frozen=True)
class ScoredBox:
    """A detection in original image pixels (half-open xyxy) with its class name and confidence."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str
    score: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


@dataclass(frozen=True)
class DetectionScores:
    """COCO AP of a detector on a collection; NaN where there is no ground truth to score against."""

    ap50: float
    ap: float
    per_class_ap50: dict[str, float] = field(default_factory=dict)
    images: int = 0

    def to_json(self) -> dict:
        clean = lambda v: None if math.isnan(v) else round(v, 6)  # noqa: E731
        return {
            "AP50": clean(self.ap50),
            "AP50:95": clean(self.ap),
            "per_class_AP50": {k: clean(v) for k, v in self.per_class_ap50.items()},
            "images": self.images,
        }


def coco_average_precision(
    ground_truth: Sequence[Sequence[Box]], predictions: Sequence[Sequence[ScoredBox]], classes: Sequence[str],
    ignore_difficult: bool = True,
) -> DetectionScores:
    """AP@0.5 and AP@0.5:0.95 of ``predictions`` against ``ground_truth`` (one list per image, same order).

    ``ignore_difficult=False`` scores difficult boxes like any other.
    """
    if len(ground_truth) != len(predictions):
        raise BadInputError(f"{len(ground_truth)} images of ground truth but {len(predictions)} of predictions")
    category = {name: i + 1 for i, name in enumerate(classes)}
    images = [{"id": i + 1, "width": 1, "height": 1} for i in range(len(ground_truth))]
    annotations = []
    for i, boxes in enumerate(ground_truth):
        for box in boxes:
            if box.label not in category:
                continue
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": category[box.label],
                "bbox": [box.x0, box.y0, box.width, box.height], "area": box.area,
                "iscrowd": int(ignore_difficult and box.difficult),
            })
    results = [
        {"image_id": i + 1, "category_id": category[d.label], "bbox": [d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0],
         "score": d.score}
        for i, dets in enumerate(predictions) for d in dets if d.label in category
    ]
    per_class = {name: math.nan for name in classes}
    if not annotations:
        return DetectionScores(math.nan, math.nan, per_class, len(ground_truth))
    if not results:
        per_class = {name: (0.0 if any(a["category_id"] == category[name] for a in annotations) else math.nan)
                     for name in classes}
        return DetectionScores(0.0, 0.0, per_class, len(ground_truth))
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": i, "name": n} for n, i in category.items()]}
        truth.createIndex()
        found = truth.loadRes(results)
        evaluation = COCOeval(truth, found, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [math.nan if v < 0 else float(v) for v in evaluation.stats[:2]]
    precision = evaluation.eval["precision"]  # (IoU thresholds, recall points, classes, areas, max dets)
    for k, name in enumerate(classes):
        curve = precision[0, :, k, 0, -1]
        per_class[name] = float(curve.mean()) if (curve > -1).any() else math.nan
    return DetectionScores(stats[1], stats[0], per_class, len(ground_truth))


def image_tensor(image: Image.Image, min_size: int, max_size: int) -> tuple[torch.Tensor, float]:
    """The image shrunk as the detector would see it, as (3, h, w) in [0, 1], and the factor it was scaled by."""
    scale = min(min_size / min(image.size), max_size / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    pixels = np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), scale


def scored_boxes(detections: Detections, classes: Sequence[str], scale: float = 1.0) -> list[ScoredBox]:
    """Detections as named boxes in original pixels (working pixels divided by ``scale``)."""
    labels = detections.labels.tolist()
    return [
        ScoredBox(*(float(v) / scale for v in box), classes[label], float(score))
        for box, score, label in zip(detections.boxes.tolist(), detections.scores.tolist(), labels)
    ]


def detector_input(path: str | Path, min_size: int = 320, max_size: int = 512) -> tuple[torch.Tensor, float]:
    """An image file decoded and shrunk as the detector sees it (see ``image_tensor``)."""
    return image_tensor(load_image(path), min_size, max_size)


def detect_image(detector: Detector, path: str | Path, min_size: int = 320, max_size: int = 512) -> list[ScoredBox]:
    """``detector``'s boxes on one image file, in its original pixels."""
    pixels, scale = detector_input(path, min_size, max_size)
    return scored_boxes(detector(pixels[None])[0], detector.classes, scale)


def detect_samples(
    detector: Detector, samples: Sequence[Sample], min_size: int = 320, max_size: int = 512,
    show_progress: bool = True, workers: int = 0,
) -> list[list[ScoredBox] | None]:
    """Boxes per sample, None for a sample whose image cannot be read; images are decoded in ``workers``
    processes while the detector runs (0: in line)."""
    inputs = prepared_ahead([s.path for s in samples], partial(detector_input, min_size=min_size, max_size=max_size),
                            workers=workers)
    found: list[list[ScoredBox] | None] = []
    for prepared, _problem in progress(inputs, "detecting", total=len(samples)) if show_progress else inputs:
        if prepared is None:
            found.append(None)
            continue
        pixels, scale = prepared
        found.append(scored_boxes(detector(pixels[None])[0], detector.classes, scale))
    return found


def detect_collection(
    detector: Detector, dataset: Dataset, min_size: int = 320, max_size: int = 512, workers: int = 1
) -> tuple[list[list[ScoredBox]], list[str]]:
    """Run ``detector`` on every readable image (decoded in ``workers`` processes ahead of it); returns boxes per
    sample and the ids of unreadable samples."""
    return gathered(dataset, detect_samples(detector, dataset.samples, min_size, max_size, workers=workers))


def gathered(dataset: Dataset, found: Sequence[list[ScoredBox] | None]) -> tuple[list[list[ScoredBox]], list[str]]:
    """Per-sample results with None for unreadable images, as (boxes per sample, ids of the unreadable ones)."""
    unreadable = [s.id for s, boxes in zip(dataset.samples, found) if boxes is None]
    return [boxes if boxes is not None else [] for boxes in found], unreadable


def score_detections(
    dataset: Dataset, predictions: Sequence[Sequence[ScoredBox]], classes: Sequence[str], level: str = "figure"
) -> DetectionScores:
    """COCO AP of ``predictions`` (one list per sample) against the ``level`` boxes of ``dataset``."""
    truth = [[b for b in s.boxes if b.level == level] for s in dataset.samples]
    return coco_average_precision(truth, predictions, classes)


def detector_classes(detector: Detector) -> tuple[str, ...]:
    """The object classes of ``detector``, without the background."""
    return tuple(c for c in detector.classes if c != "__background__")


def evaluate_detector(
    detector: Detector, dataset: Dataset, classes: Sequence[str] | None = None,
    min_size: int = 320, max_size: int = 512, level: str = "figure",
) -> tuple[DetectionScores, list[list[ScoredBox]]]:
    """COCO AP of ``detector`` on the ``level`` boxes of ``dataset``, and its detections (for failure reports)."""
    classes = tuple(classes) if classes is not None else detector_classes(detector)
    predictions, _ = detect_collection(detector, dataset, min_size, max_size)
    return score_detections(dataset, predictions, classes, level), predictions
