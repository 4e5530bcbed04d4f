"""Scoring derived boxes as a detector is scored: average IoU, GT-known localisation and COCO mAP at 0.5.

The analogue of Table 4.4 of Pinciroli Vago (2021), one row per method, and next to it the measures that
say whether every instance was found (several people in one painting), not only the most salient one:

* average IoU: for each derived box, the IoU with the best-matching expert box of the same class in the
  same image (0 when there is none), averaged over derived boxes; these IoUs also make the histogram;
* GT-known Loc: the percentage of expert boxes matched at IoU > 0.5 by a derived box of the same class in
  the same image (the class is known, only the location is judged);
* mAP: COCO average precision at IoU 0.5 (pycocotools, 101-point interpolation, up to 100 boxes per
  image), per class and averaged over the classes that have expert boxes;
* CorLoc (Deselaers et al., 2012): the percentage of positive (image, class) pairs, those with at least one
  expert box, whose top-scoring derived box has IoU >= 0.5 with some expert box of the class; a pair without
  any derived box is a failure. It judges the best box only, so it cannot reward extra boxes;
* recall at IoU 0.5: the share of expert boxes overlapped at IoU >= 0.5 by some derived box of the same
  class and image; it rewards finding every instance, and with ``boxes_per_image`` shows the cost;
* boxes per image: derived boxes divided by the images that have at least one derived box (images without
  any are already counted as failures by CorLoc and recall);
* mAP at 0.5 with difficult boxes ignored: as ``map50``, but difficult expert boxes are neither required nor
  penalised, as in the protocol Pascal VOC and People-Art were published with.

Apart from that last one, expert boxes marked difficult count like the others. Images are those given
(usually the images the box procedure selected); a class with no expert box there has no AP and is left out
of the mean.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from iconolens.data.records import Box, Dataset, Level
from iconolens.detect.evaluation import ScoredBox, coco_average_precision
from iconolens.evaluate.boxes import DerivedBox

MATCH_IOU = 0.5


@dataclass(frozen=True)
class DetectionScores:
    """One method's row of the Table 4.4 analogue, with the per-class APs and every box's IoU."""

    method: str
    average_iou: float
    gt_known_loc: float
    map50: float
    ap_per_class: dict[str, float]
    ious: np.ndarray
    n_boxes: int
    n_truth: int
    n_images: int
    corloc: float = math.nan
    recall50: float = math.nan
    map50_ignore_difficult: float = math.nan
    boxes_per_image: float = math.nan
    ap_per_class_ignore_difficult: dict[str, float] = field(default_factory=dict)
    n_positive_pairs: int = 0
    n_images_with_boxes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The table row: method, the metrics and the counts behind them."""
        def num(v: float, digits: int) -> float | None:
            return None if math.isnan(v) else round(v, digits)

        return {
            "method": self.method,
            "average_iou": num(self.average_iou, 4),
            "gt_known_loc": num(self.gt_known_loc, 2),
            "map50": num(self.map50, 4),
            "corloc": num(self.corloc, 2),
            "recall50": num(self.recall50, 4),
            "map50_ignore_difficult": num(self.map50_ignore_difficult, 4),
            "boxes_per_image": num(self.boxes_per_image, 3),
            "boxes": self.n_boxes,
            "truth_boxes": self.n_truth,
            "images": self.n_images,
            "positive_pairs": self.n_positive_pairs,
            "images_with_boxes": self.n_images_with_boxes,
            **self.extra,
        }

    def to_json(self) -> dict[str, Any]:
        data = self.row()
        data["ap_per_class"] = {c: (None if math.isnan(v) else round(v, 4)) for c, v in self.ap_per_class.items()}
        data["ap_per_class_ignore_difficult"] = {
            c: (None if math.isnan(v) else round(v, 4)) for c, v in self.ap_per_class_ignore_difficult.items()
        }
        data["ious"] = [round(float(v), 4) for v in self.ious]
        return data


def _tensor(boxes: Sequence[tuple[float, float, float, float]]) -> torch.Tensor:
    return torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)


def coco_ap50(
    truth: dict[tuple[str, str], list[tuple[float, float, float, float]]],
    detections: Sequence[DerivedBox],
    classes: Sequence[str],
    image_ids: Sequence[str],
    difficult: Mapping[tuple[str, str], Sequence[bool]] | None = None,
    ignore_difficult: bool = False,
) -> dict[str, float]:
    """AP at IoU 0.5 per class with pycocotools over ``image_ids``; NaN for a class without expert boxes.

    ``difficult`` marks, parallel to ``truth``, the expert boxes that are difficult; with
    ``ignore_difficult`` they are neither required nor penalised (the VOC rule).
    """
    index = {sid: i for i, sid in enumerate(image_ids)}
    expert: list[list[Box]] = [[] for _ in image_ids]
    for (sid, cls), boxes in truth.items():
        if sid in index:
            flags = (difficult or {}).get((sid, cls), [False] * len(boxes))
            expert[index[sid]].extend(Box(*box, label=cls, difficult=bool(flag)) for box, flag in zip(boxes, flags))
    found: list[list[ScoredBox]] = [[] for _ in image_ids]
    for d in detections:
        if d.sample_id in index:
            found[index[d.sample_id]].append(ScoredBox(d.x0, d.y0, d.x1, d.y1, d.label, d.score))
    return coco_average_precision(expert, found, classes, ignore_difficult=ignore_difficult).per_class_ap50


def _mean_present(ap: Mapping[str, float]) -> float:
    present = [v for v in ap.values() if not math.isnan(v)]
    return float(np.mean(present)) if present else float("nan")


def evaluate_derived_boxes(
    dataset: Dataset,
    boxes: Sequence[DerivedBox],
    method: str,
    level: Level = "figure",
    image_ids: Sequence[str] | None = None,
) -> DetectionScores:
    """Score derived ``boxes`` against the expert boxes of ``dataset`` on ``image_ids`` (default: all)."""
    wanted = list(image_ids) if image_ids is not None else [s.id for s in dataset.samples]
    wanted_set = set(wanted)
    truth: dict[tuple[str, str], list[tuple[float, float, float, float]]] = defaultdict(list)
    difficult: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for sample in dataset.samples:
        if sample.id in wanted_set:
            for b in sample.boxes:
                if b.level == level and b.area > 0:
                    truth[(sample.id, b.figure_class)].append(b.xyxy)
                    difficult[(sample.id, b.figure_class)].append(b.difficult)
    derived: dict[tuple[str, str], list[DerivedBox]] = defaultdict(list)
    for d in boxes:
        if d.sample_id in wanted_set:
            derived[(d.sample_id, d.label)].append(d)

    ious: list[float] = []
    matched = 0
    for key, mine in derived.items():
        gt = truth.get(key, [])
        if not gt:
            ious.extend(0.0 for _ in mine)
            continue
        table = box_iou(_tensor([d.xyxy for d in mine]), _tensor(gt))
        ious.extend(table.max(dim=1).values.tolist())
    n_truth = 0
    recalled = 0
    localised_pairs = 0
    for key, gt in truth.items():
        n_truth += len(gt)
        mine = derived.get(key, [])
        if mine:
            table = box_iou(_tensor([d.xyxy for d in mine]), _tensor(gt))
            best_per_truth = table.max(dim=0).values
            matched += int((best_per_truth > MATCH_IOU).sum())
            recalled += int((best_per_truth >= MATCH_IOU).sum())
            top = max(range(len(mine)), key=lambda i: mine[i].score)  # the first of equal scores
            localised_pairs += int(bool((table[top] >= MATCH_IOU).any()))

    classes = list(dataset.classes)
    found = [d for ds in derived.values() for d in ds]
    ap = coco_ap50(truth, found, classes, wanted)
    ap_ignoring_difficult = coco_ap50(truth, found, classes, wanted, difficult=difficult, ignore_difficult=True)
    images_with_boxes = len({sid for sid, _ in derived})
    return DetectionScores(
        method=method,
        average_iou=float(np.mean(ious)) if ious else float("nan"),
        gt_known_loc=100.0 * matched / n_truth if n_truth else float("nan"),
        map50=_mean_present(ap),
        ap_per_class=ap,
        ious=np.asarray(ious, dtype=np.float64),
        n_boxes=len(ious),
        n_truth=n_truth,
        n_images=len(wanted),
        corloc=100.0 * localised_pairs / len(truth) if truth else float("nan"),
        recall50=recalled / n_truth if n_truth else float("nan"),
        map50_ignore_difficult=_mean_present(ap_ignoring_difficult),
        boxes_per_image=len(found) / images_with_boxes if images_with_boxes else float("nan"),
        ap_per_class_ignore_difficult=ap_ignoring_difficult,
        n_positive_pairs=len(truth),
        n_images_with_boxes=images_with_boxes,
    )
