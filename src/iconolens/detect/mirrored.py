"""Test-time flip: a detector run on each image and on its mirror image, the two sets of boxes merged.

A detector trained on a few hundred noisy boxes does not see a painting and its mirror image the same way,
though it was trained on both (training flips at random): each view finds figures the other misses or scores
low. Running both and keeping the union, with per-class non-maximum suppression where the two agree, recovers
some of them. On People-Art's val split it raised the AP@0.5 of eight of nine weakly trained detectors (0.011
on average), and pseudo boxes re-labelled with it were better in every seed (docs/benchmarks.md). It doubles
the cost of detection, so it is for evaluation and re-labelling, not for D-RISE's thousands of passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from iconolens.data.records import Sample
from iconolens.data.stream import prepared_ahead
from iconolens.detect.detections import Detections, Detector
from iconolens.detect.evaluation import ScoredBox, detector_input, scored_boxes
from iconolens.progress import progress

#: boxes of one class from the two views with at least this IoU are one detection (Faster R-CNN's own NMS IoU)
SAME_DETECTION_IOU = 0.5
#: at most this many detections per image after merging (COCO's maxDets)
MAX_DETECTIONS = 100


def mirrored(detections: Detections, width: int) -> Detections:
    """Detections of a mirrored image of ``width`` pixels, expressed in the original image's coordinates."""
    boxes = detections.boxes.clone()
    boxes[:, 0] = width - detections.boxes[:, 2]
    boxes[:, 2] = width - detections.boxes[:, 0]
    return Detections(boxes, detections.scores, detections.class_probs, detections.objectness, detections.classes)


def merged(first: Detections, second: Detections, iou: float = SAME_DETECTION_IOU,
           limit: int = MAX_DETECTIONS) -> Detections:
    """The union of two detection sets of one image, with per-class NMS at ``iou``, best ``limit`` kept."""
    def cat(a: Tensor | None, b: Tensor | None) -> Tensor | None:
        return None if a is None or b is None else torch.cat([a, b])

    both = Detections(torch.cat([first.boxes, second.boxes]), torch.cat([first.scores, second.scores]),
                      torch.cat([first.class_probs, second.class_probs]), cat(first.objectness, second.objectness),
                      torch.cat([first.labels, second.labels]))
    if not len(both):
        return both
    keep = batched_nms(both.boxes.float(), both.scores.float(), both.labels, iou)[:limit]
    return both.select(keep)


class MirroredViews:
    """A :class:`~iconolens.detect.detections.Detector` that runs ``detector`` on each image and its mirror image
    (in one batch) and returns the merged detections."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.classes = detector.classes

    def views(self, images: Tensor) -> list[tuple[Detections, Detections]]:
        """Per image, what the detector finds in it alone and the merged detections of both views."""
        found = self.detector(torch.cat([images, images.flip(-1)]))
        n, width = images.shape[0], images.shape[-1]
        return [(found[i], merged(found[i], mirrored(found[n + i], width))) for i in range(n)]

    def __call__(self, images: Tensor) -> list[Detections]:
        return [both for _, both in self.views(images)]


def detect_both_ways(
    detector: Detector, samples: Sequence[Sample], min_size: int = 320, max_size: int = 512, workers: int = 1,
) -> tuple[list[list[ScoredBox] | None], list[list[ScoredBox] | None]]:
    """Per sample, ``detector``'s boxes of the image alone and of both views merged, from one pass over each view
    (None for an image that cannot be read), as :func:`~iconolens.detect.evaluation.detect_samples` gives them."""
    views = MirroredViews(detector)
    inputs = prepared_ahead([s.path for s in samples], partial(detector_input, min_size=min_size, max_size=max_size),
                            workers=workers)
    alone: list[list[ScoredBox] | None] = []
    both: list[list[ScoredBox] | None] = []
    for prepared, _problem in progress(inputs, "detecting", total=len(samples)):
        if prepared is None:
            alone.append(None)
            both.append(None)
            continue
        pixels, scale = prepared
        ((direct, merged_views),) = views.views(pixels[None])
        alone.append(scored_boxes(direct, detector.classes, scale))
        both.append(scored_boxes(merged_views, detector.classes, scale))
    return alone, both
