"""Offline augmentation fills rare classes, reproducibly, with the iMet transformations."""

from __future__ import annotations

import numpy as np
import torch

from iconolens.models.augmentation import AugmentationRanges, augment_image, augment_to_minimum
from iconolens.models.labelled_images import LabelledImages, class_counts


def _data(counts: list[int], size: int = 16) -> LabelledImages:
    generator = torch.Generator().manual_seed(0)
    n = sum(counts)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    targets = torch.as_tensor(np.repeat(np.arange(len(counts)), counts))
    return LabelledImages(images, targets, tuple(f"s{i}" for i in range(n)), "multiclass", len(counts))


def test_every_class_reaches_the_minimum_and_large_classes_are_untouched():
    data = _data([10, 3, 1])
    out = augment_to_minimum(data, 6, seed=0)
    assert class_counts(out).tolist() == [10, 6, 6]
    assert torch.equal(out.images[: len(data)], data.images)
    assert len(set(out.sample_ids)) == len(out.sample_ids)


def test_same_seed_same_bytes_other_seed_other_images():
    data = _data([2, 2])
    a = augment_to_minimum(data, 5, seed=7)
    b = augment_to_minimum(data, 5, seed=7)
    c = augment_to_minimum(data, 5, seed=8)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_a_copy_inherits_its_sources_label():
    data = _data([1, 4])
    out = augment_to_minimum(data, 3, seed=0)
    extra = out.targets[len(data) :]
    assert extra.tolist() == [0, 0]
    assert [i.split("#")[0] for i in out.sample_ids[len(data) :]] == ["s0", "s0"]


def test_flip_alone_mirrors_the_image():
    image = torch.arange(3 * 4 * 5, dtype=torch.uint8).reshape(3, 4, 5)
    ranges = AugmentationRanges(flip_probability=1.0, brightness=(1.0, 1.0), zoom=(1.0, 1.0),
                                shift_fraction=0.0, rotation_degrees=0.0)
    out = augment_image(image, np.random.default_rng(0), ranges)
    assert torch.equal(out, torch.flip(image, dims=[2]))


def test_brightness_scales_pixel_values():
    image = torch.full((3, 8, 8), 100, dtype=torch.uint8)
    ranges = AugmentationRanges(flip_probability=0.0, brightness=(1.2, 1.2), zoom=(1.0, 1.0),
                                shift_fraction=0.0, rotation_degrees=0.0)
    out = augment_image(image, np.random.default_rng(0), ranges)
    assert torch.all(out == 120)
