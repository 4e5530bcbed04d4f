"""Measuring explanations of detections (Petsiuk et al. 2021; Bengamra et al. 2023).

- Deletion / insertion for one target: the similarity of the best-matching detection (D-RISE's
  ``IoU x cos x objectness``) as the most salient pixels are replaced by / restored from a blurred copy.
- AP under perturbation: over a collection, the detector's AP after deleting or inserting the top ``x`` % of
  each image's pixels by saliency, for several ``x``.
- Pointing game: whether a map's maximum falls inside the target box.
- Average saliency: each map cropped to its detection's box, resized to one size, min-max normalised, averaged;
  the typical layout of what a detector looks at for a class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from iconolens.data.records import Box
from iconolens.detect.detections import Detections, Detector
from iconolens.detect.evaluation import DetectionScores, coco_average_precision, scored_boxes
from iconolens.errors import BadInputError
from iconolens.evaluate.faithfulness import PerturbationCurves, blurred_copy, perturbation_curves, pixel_ranks
from iconolens.explain.drise import detection_similarity


def best_match_similarity(detector: Detector, target: Detections):
    """A ``score_batch`` for perturbation curves: each image's best D-RISE similarity to the one ``target``."""
    if len(target) != 1:
        raise BadInputError(f"a perturbation curve follows exactly one target detection, got {len(target)}")

    def score(images: Tensor) -> Tensor:
        found = detector(images)
        return torch.tensor([
            float(detection_similarity(target, d).max()) if len(d) else 0.0 for d in found
        ])

    return score


def detection_perturbation_curves(
    detector: Detector, image: Tensor, saliency: np.ndarray | Tensor, target: Detections,
    steps: int = 50, batch_size: int = 16, blur_kernel: int = 51, blur_sigma: float = 50.0,
) -> PerturbationCurves:
    """Deletion and insertion curves of one detection's saliency map (``image`` (3, H, W), map (H, W))."""
    saliency = np.asarray(saliency.detach().cpu() if isinstance(saliency, Tensor) else saliency, dtype=np.float32)
    return perturbation_curves(
        image, saliency, best_match_similarity(detector, target), steps=steps, batch_size=batch_size,
        blur_kernel=blur_kernel, blur_sigma=blur_sigma,
    )


def perturbed_image(
    image: Tensor, saliency: np.ndarray, fraction: float, mode: str, blur_kernel: int = 51, blur_sigma: float = 50.0
) -> Tensor:
    """``image`` with its top ``fraction`` salient pixels blurred (``delete``) or only those kept sharp (``insert``)."""
    if mode not in ("delete", "insert"):
        raise BadInputError(f"perturbation mode must be 'delete' or 'insert', got {mode!r}")
    blurred = blurred_copy(image, blur_kernel, blur_sigma)
    count = int(round(fraction * saliency.size))
    top = torch.from_numpy(pixel_ranks(saliency) < count).reshape(1, *saliency.shape)
    return torch.where(top, blurred, image) if mode == "delete" else torch.where(top, image, blurred)


@dataclass(frozen=True)
class PerturbedAP:
    """AP of the detector after perturbing the top ``fractions`` of every image's pixels."""

    fractions: tuple[float, ...]
    deletion: tuple[DetectionScores, ...]
    insertion: tuple[DetectionScores, ...]

    def to_json(self) -> dict:
        return {
            "fractions": list(self.fractions),
            "deletion": [s.to_json() for s in self.deletion],
            "insertion": [s.to_json() for s in self.insertion],
        }


def ap_under_perturbation(
    detector: Detector,
    images: Sequence[Tensor],
    saliencies: Sequence[np.ndarray],
    ground_truth: Sequence[Sequence[Box]],
    classes: Sequence[str],
    fractions: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
    blur_kernel: int = 51,
    blur_sigma: float = 50.0,
) -> PerturbedAP:
    """AP over a collection after deleting / inserting each image's top ``x`` salient pixels, for each ``x``.

    ``images`` (3, H, W) at the size the maps and ``ground_truth`` boxes refer to; ``saliencies`` one (H, W) map
    per image (e.g. the pixel-wise maximum of its detections' maps).
    """
    if not len(images) == len(saliencies) == len(ground_truth):
        raise BadInputError("images, saliency maps and ground truth must have one entry per image")
    results: dict[str, list[DetectionScores]] = {"delete": [], "insert": []}
    for mode in ("delete", "insert"):
        for fraction in fractions:
            predictions = []
            for image, saliency in zip(images, saliencies):
                changed = perturbed_image(image, np.asarray(saliency), fraction, mode, blur_kernel, blur_sigma)
                predictions.append(scored_boxes(detector(changed[None])[0], detector.classes))
            results[mode].append(coco_average_precision(ground_truth, predictions, classes))
    return PerturbedAP(tuple(float(f) for f in fractions), tuple(results["delete"]), tuple(results["insert"]))


def pointing_game(saliency: np.ndarray | Tensor, box: Sequence[float], tolerance: float = 0.0) -> bool:
    """True when the map's maximum lies inside ``box`` (xyxy, half-open) grown by ``tolerance`` pixels.

    A map without a unique peak (e.g. all zeros) points nowhere and misses.
    """
    values = np.asarray(saliency.detach().cpu() if isinstance(saliency, Tensor) else saliency)
    top = values.max()
    if not np.isfinite(top) or (values == top).all():
        return False
    ys, xs = np.nonzero(values == top)
    x0, y0, x1, y1 = box
    centre_x, centre_y = xs + 0.5, ys + 0.5
    inside = (centre_x >= x0 - tolerance) & (centre_x <= x1 + tolerance)
    inside &= (centre_y >= y0 - tolerance) & (centre_y <= y1 + tolerance)
    return bool(inside.any())


def saliency_crop(saliency: np.ndarray | Tensor, box: Sequence[float], size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """The map cropped to its box, resized bilinearly to ``size`` (h, w) and min-max normalised (zeros if flat)."""
    values = torch.as_tensor(np.asarray(saliency), dtype=torch.float32)
    height, width = values.shape
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    if x1 <= x0 or y1 <= y0:
        raise BadInputError(f"box {tuple(box)} lies outside its {width}x{height} map")
    crop = F.interpolate(values[None, None, y0:y1, x0:x1], size=size, mode="bilinear", align_corners=False)[0, 0]
    lo, hi = float(crop.min()), float(crop.max())
    return np.zeros(size) if hi <= lo else ((crop - lo) / (hi - lo)).double().numpy()


def average_saliency(
    maps: Sequence[np.ndarray | Tensor], boxes: Sequence[Sequence[float]], size: tuple[int, int] = (64, 64)
) -> np.ndarray:
    """Mean of the maps cropped to their boxes, resized bilinearly to ``size`` (h, w) and min-max normalised."""
    if len(maps) != len(boxes):
        raise BadInputError(f"{len(maps)} maps but {len(boxes)} boxes")
    return mean_of_crops([saliency_crop(saliency, box, size) for saliency, box in zip(maps, boxes)])


def mean_of_crops(crops: Sequence[np.ndarray]) -> np.ndarray:
    """The average of :func:`saliency_crop` results (float32)."""
    if not crops:
        raise BadInputError("an average saliency map needs at least one detection")
    return (np.sum(crops, axis=0, dtype=np.float64) / len(crops)).astype(np.float32)
