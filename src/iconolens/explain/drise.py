"""D-RISE: black-box saliency maps for object detections (Petsiuk et al., CVPR 2021).

For random masks ``M_i`` the detector runs on ``image * M_i``; each detection ``d_j = (L_j, O_j, P_j)`` (box,
objectness, class-probability vector) is compared with a target ``d_t = (L_t, 1, P_t)`` by

    s(d_t, d_j) = IoU(L_t, L_j) * cos(P_t, P_j) * O_j,

the mask's weight for that target is ``w_i = max_j s(d_t, d_j)`` over the masked image's detections, and the
saliency is ``S_t = sum_i w_i M_i / (N p)``. Every target of an image is scored against every detection of every
mask of a batch in one array operation, so explaining all detections costs one pass over the masks.

Masks are RISE masks: an ``s x s`` grid of cells kept with probability ``p``, upsampled bilinearly to
``(s + 1)`` cells and cropped at a random sub-cell shift. Mask ``i`` depends only on ``(seed, i)``, so the map is
the same for any batch size. They are made batch by batch: memory does not grow with ``N``.

An optional stopping rule ends the pass once the map has converged: every ``window`` masks the mean map is
compared with the one ``window`` masks earlier, and the pass stops when the relative change (Frobenius norm) of
every target's map is below ``tolerance``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from iconolens.detect.detections import Detections, Detector
from iconolens.errors import BadInputError
from iconolens.progress import progress


@dataclass(frozen=True)
class DriseResult:
    """Saliency of each target and how the pass went.

    ``maps`` (T, H, W) float32 raw saliency (expected mask weight per pixel, divided by ``keep``);
    ``masks_used`` is N, or fewer when the stopping rule ended the pass (``converged``);
    ``masks_without_detections`` counts masked images on which the detector found nothing.
    """

    maps: Tensor
    targets: Detections
    masks_used: int
    converged: bool
    masks_without_detections: int

    @property
    def no_detections(self) -> bool:
        """True when the detector found nothing on any masked image: every map is zeros."""
        return self.masks_used > 0 and self.masks_without_detections == self.masks_used

    def summary(self) -> str:
        """One sentence on the pass, saying plainly when the maps are empty."""
        if len(self.targets) == 0:
            return "no targets to explain: no detection reached the score threshold and no boxes were given"
        if self.no_detections:
            return (
                f"the detector returned no detections on any of the {self.masks_used} masked images, "
                "so every saliency map is zeros"
            )
        stop = "the stopping rule was met" if self.converged else "the stopping rule was not met or not used"
        return f"{len(self.targets)} target(s) explained with {self.masks_used} masks ({stop})"


def detection_similarity(targets: Detections, proposals: Detections) -> Tensor:
    """``s = IoU x cos(class probabilities) x objectness`` for every target (rows) and proposal (columns)."""
    if targets.num_classes != proposals.num_classes:
        raise BadInputError(
            f"targets have {targets.num_classes} class probabilities but the detector gives "
            f"{proposals.num_classes}; they must describe the same classes"
        )
    if len(targets) == 0 or len(proposals) == 0:
        return torch.zeros(len(targets), len(proposals))
    iou = box_iou(targets.boxes.float(), proposals.boxes.float())
    cosine = F.normalize(targets.class_probs.float(), dim=1) @ F.normalize(proposals.class_probs.float(), dim=1).T
    return iou * cosine * proposals.objectness_or_ones().float()[None, :]


def mask_weights(targets: Detections, per_image: list[Detections]) -> Tensor:
    """(T, B): for each target, the best similarity over each masked image's detections (0 when none)."""
    t, b = len(targets), len(per_image)
    counts = [len(d) for d in per_image]
    if sum(counts) == 0 or t == 0:
        return torch.zeros(t, b)
    proposals = Detections(
        boxes=torch.cat([d.boxes for d in per_image]),
        scores=torch.cat([d.scores for d in per_image]),
        class_probs=torch.cat([d.class_probs for d in per_image]),
        objectness=torch.cat([d.objectness_or_ones() for d in per_image]),
    )
    similarity = detection_similarity(targets, proposals)
    owner = torch.repeat_interleave(torch.arange(b), torch.tensor(counts))
    weights = torch.zeros(t, b)
    return weights.scatter_reduce(1, owner[None, :].expand(t, -1), similarity, reduce="amax", include_self=True)


def generate_masks(
    start: int, count: int, size: tuple[int, int], grid: int = 16, keep: float = 0.5, seed: int = 0
) -> Tensor:
    """RISE masks ``start .. start+count-1`` for an image of ``size`` (H, W), shaped (count, H, W) in [0, 1].

    Mask ``i`` is drawn from a generator seeded with ``(seed, i)``, so any slice of the sequence is reproducible
    on its own.
    """
    height, width = size
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    cells = np.empty((count, 1, grid, grid), dtype=np.float32)
    shifts = np.empty((count, 2), dtype=np.int64)
    for k in range(count):
        rng = np.random.default_rng([seed, start + k])
        cells[k, 0] = rng.random((grid, grid)) < keep
        shifts[k] = rng.integers(0, cell_h), rng.integers(0, cell_w)
    up = F.interpolate(
        torch.from_numpy(cells), size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear", align_corners=False
    )[:, 0].clamp_(0.0, 1.0)
    return torch.stack([up[k, dy : dy + height, dx : dx + width] for k, (dy, dx) in enumerate(shifts.tolist())])


def _has_converged(current: Tensor, previous: Tensor, tolerance: float) -> bool:
    """Every target's map is non-zero and moved by less than ``tolerance`` relative to its norm."""
    current, previous = current.flatten(1).double(), previous.flatten(1).double()
    norm = current.norm(dim=1)
    if not bool((norm > 0).all()):
        return False
    return float(((current - previous).norm(dim=1) / norm).max()) < tolerance


def stopping_point(history: list[tuple[int, Tensor]], tolerance: float) -> int | None:
    """Masks the stopping rule would have used, given the maps seen every window (from ``on_window``).

    None when the rule is never met within the history.
    """
    for (_, previous), (used, current) in zip(history, history[1:]):
        if _has_converged(current, previous, tolerance):
            return used
    return None


def _check_targets(targets: Detections, size: tuple[int, int], num_classes: int) -> None:
    height, width = size
    if targets.num_classes != num_classes:
        raise BadInputError(
            f"targets have {targets.num_classes} class probabilities but the detector has {num_classes} classes"
        )
    for x0, y0, x1, y1 in targets.boxes.tolist():
        if not (x1 > x0 and y1 > y0) or x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise BadInputError(
                f"target box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the {width}x{height} image or is empty"
            )


def drise(
    detector: Detector,
    image: Tensor,
    targets: Detections | None = None,
    n_masks: int = 5000,
    grid: int = 16,
    keep: float = 0.5,
    batch_size: int = 16,
    seed: int = 0,
    tolerance: float | None = None,
    window: int = 250,
    on_window: Callable[[int, Tensor], None] | None = None,
) -> DriseResult:
    """Explain ``targets`` (default: every detection of ``image``) with D-RISE saliency maps.

    ``image`` is (3, H, W) in [0, 1]. ``tolerance`` turns on the stopping rule (checked every ``window`` masks).
    ``on_window(masks_used, maps)`` is called every ``window`` masks with the maps so far, shaped (T, H, W):
    enough to trace convergence, or to find where any tolerance would have stopped, from a single pass.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise BadInputError(f"D-RISE needs one RGB image shaped (3, H, W), got {tuple(image.shape)}")
    if n_masks < 1 or batch_size < 1 or grid < 1 or not 0.0 < keep <= 1.0:
        raise BadInputError("D-RISE needs n_masks >= 1, batch_size >= 1, grid >= 1 and 0 < keep <= 1")
    size = (int(image.shape[1]), int(image.shape[2]))
    num_classes = len(detector.classes)
    with torch.inference_mode():
        if targets is None:
            targets = detector(image[None])[0]
        _check_targets(targets, size, num_classes)
        t = len(targets)
        total = torch.zeros(t, size[0] * size[1], dtype=torch.float64)
        if t == 0:
            return DriseResult(torch.zeros(0, *size), targets, 0, False, 0)
        used, empty, converged = 0, 0, False
        previous: Tensor | None = None
        # Batches never straddle a check point, so the stopping rule sees the same sums for any batch size.
        bounds: list[tuple[int, int]] = []
        start = 0
        while start < n_masks:
            end = min(start + batch_size, n_masks)
            if tolerance is not None or on_window is not None:
                end = min(end, (start // window + 1) * window)
            bounds.append((start, end))
            start = end
        for start, end in progress(bounds, "D-RISE masks"):
            masks = generate_masks(start, end - start, size, grid, keep, seed)
            per_image = detector(image[None] * masks[:, None])
            for d in per_image:
                if d.num_classes != num_classes:
                    raise BadInputError(
                        f"the detector returned {d.num_classes} class probabilities but declares {num_classes} classes"
                    )
            empty += sum(len(d) == 0 for d in per_image)
            weights = mask_weights(targets, per_image)
            total += (weights.double() @ masks.reshape(end - start, -1).double())
            used = end
            if on_window is not None and used % window == 0:
                on_window(used, (total / (used * keep)).reshape(t, *size).to(torch.float32))
            if tolerance is not None and used % window == 0:
                current = total / used
                if previous is not None and _has_converged(current, previous, tolerance):
                    converged = True
                    break
                previous = current
    maps = (total / (used * keep)).reshape(t, *size).to(torch.float32)
    return DriseResult(maps, targets, used, converged, int(empty))
