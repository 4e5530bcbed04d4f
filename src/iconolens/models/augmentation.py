"""Offline augmentation: extra training images for rare classes until each has at least N.

The transformations are those of the iMet study: horizontal flip, brightness, zoom, a small shift and a
small rotation, drawn from a seeded generator, so the same seed yields the same augmented set. They are
applied once, before training ("offline"), which keeps epochs deterministic and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torchvision.transforms.functional as TF

from iconolens.models.labelled_images import LabelledImages, class_counts


@dataclass(frozen=True)
class AugmentationRanges:
    """Ranges the random transformation parameters are drawn from."""

    flip_probability: float = 0.5
    brightness: tuple[float, float] = (0.8, 1.2)
    zoom: tuple[float, float] = (1.0, 1.2)
    shift_fraction: float = 0.1
    rotation_degrees: float = 10.0


def augment_image(image: torch.Tensor, rng: np.random.Generator, ranges: AugmentationRanges) -> torch.Tensor:
    """One randomly transformed copy of a (3, H, W) uint8 image, same size."""
    out = image
    if rng.random() < ranges.flip_probability:
        out = TF.hflip(out)
    size = image.shape[-1]
    shift = [int(round(rng.uniform(-1, 1) * ranges.shift_fraction * size)) for _ in range(2)]
    out = TF.affine(
        out,
        angle=float(rng.uniform(-ranges.rotation_degrees, ranges.rotation_degrees)),
        translate=shift,
        scale=float(rng.uniform(*ranges.zoom)),
        shear=[0.0, 0.0],
        interpolation=TF.InterpolationMode.BILINEAR,
    )
    return TF.adjust_brightness(out, float(rng.uniform(*ranges.brightness)))


def augment_to_minimum(
    data: LabelledImages, minimum: int, seed: int, ranges: AugmentationRanges | None = None
) -> LabelledImages:
    """``data`` plus augmented copies of images of every class with fewer than ``minimum`` images.

    Copies are made from the class's own images in a seeded random order (cycling when more copies than
    originals are needed). In multi-label data a copy counts for all of its labels, so classes that
    co-occur with a rare one may grow as well.
    """
    ranges = ranges or AugmentationRanges()
    rng = np.random.default_rng(seed)
    counts = class_counts(data).astype(np.int64)
    indicator = data.indicator()
    new_images: list[torch.Tensor] = []
    new_targets: list[torch.Tensor] = []
    new_ids: list[str] = []
    for cls in np.argsort(counts, kind="stable"):
        members = np.flatnonzero(indicator[:, cls])
        if members.size == 0:
            continue
        order = rng.permutation(members)
        k = 0
        while counts[cls] < minimum:
            source = int(order[k % order.size])
            new_images.append(augment_image(data.images[source], rng, ranges))
            new_targets.append(data.targets[source])
            new_ids.append(f"{data.sample_ids[source]}#aug{len(new_ids)}")
            counts += indicator[source]
            k += 1
    if not new_images:
        return data
    return replace(
        data,
        images=torch.cat([data.images, torch.stack(new_images)]),
        targets=torch.cat([data.targets, torch.stack(new_targets)]),
        sample_ids=data.sample_ids + tuple(new_ids),
    )
