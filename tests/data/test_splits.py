"""Stratified, seeded splits: proportions per class, determinism, and dropping classes a split lacks."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from iconolens.data.records import Box, Dataset, Sample
from iconolens.data.splits import nothing_left_error, split_counts, split_dataset, stratified_split
from iconolens.errors import BadInputError

SPLITS = ("train", "val", "test")


def _sample(i: int, labels: tuple[str, ...], boxes: tuple[Box, ...] = ()) -> Sample:
    return Sample(id=f"img{i:04d}", path=Path(f"/collection/img{i:04d}.png"), labels=labels, boxes=boxes)


def _single_label(sizes: dict[str, int]) -> Dataset:
    samples, i = [], 0
    for cls, n in sizes.items():
        for _ in range(n):
            samples.append(_sample(i, (cls,), (Box(0, 0, 5, 5, cls), Box(1, 1, 2, 2, f"keys - {cls}", "attribute"))))
            i += 1
    return Dataset(samples=tuple(samples), classes=tuple(sizes), multi_label=False)


def _multi_label(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    classes = ("c0", "c1", "c2", "c3", "c4", "c5")
    rates = (0.5, 0.3, 0.2, 0.1, 0.08, 0.05)
    samples = [_sample(i, tuple(c for c, r in zip(classes, rates) if rng.random() < r)) for i in range(n)]
    return Dataset(samples=tuple(samples), classes=classes, multi_label=True)


def test_single_label_split_is_exactly_80_10_10_per_class() -> None:
    dataset = split_dataset(_single_label({"Peter": 100, "Paul": 50, "Jerome": 30}), seed=0)
    for cls, n in {"Peter": 100, "Paul": 50, "Jerome": 30}.items():
        counts = [sum(1 for s in dataset.samples if s.labels == (cls,) and s.split == name) for name in SPLITS]
        assert counts == [0.8 * n, 0.1 * n, 0.1 * n]
    assert split_counts(dataset) == {"train": 144, "val": 18, "test": 18}


def test_multi_label_counts_stay_within_one_of_the_targets() -> None:
    dataset = _multi_label(600, seed=5)
    split = split_dataset(dataset, seed=1)
    for cls in dataset.classes:
        total = sum(cls in s.labels for s in dataset.samples)
        for name, fraction in zip(SPLITS, (0.8, 0.1, 0.1)):
            got = sum(cls in s.labels and s.split == name for s in split.samples)
            assert abs(got - fraction * total) <= 1.0, (cls, name, got, fraction * total)
    assert split_counts(split) == {"train": 480, "val": 60, "test": 60}


def test_same_seed_same_split_whatever_the_reading_order() -> None:
    dataset = _multi_label(200, seed=2)
    shuffled = list(dataset.samples)
    random.Random(4).shuffle(shuffled)
    first = {s.id: s.split for s in split_dataset(dataset, seed=7).samples}
    again = {s.id: s.split for s in split_dataset(dataset.with_samples(tuple(shuffled)), seed=7).samples}
    other = {s.id: s.split for s in split_dataset(dataset, seed=8).samples}
    assert first == again
    assert first != other


def test_sample_order_is_preserved() -> None:
    dataset = _multi_label(50, seed=3)
    assert [s.id for s in split_dataset(dataset, seed=0).samples] == [s.id for s in dataset.samples]


def test_class_missing_from_a_split_is_dropped_single_label() -> None:
    outcome = stratified_split(_single_label({"Peter": 40, "Paul": 20, "Rare": 5}), seed=0)
    # 5 images: the targets are 4, 0.5 and 0.5, so either val or test gets none of them
    assert outcome.dropped_classes == ("Rare",)
    assert outcome.removed_samples == 5
    assert outcome.dataset.classes == ("Peter", "Paul")
    assert len(outcome.dataset) == 60
    assert all("Rare" not in s.labels for s in outcome.dataset.samples)


def test_class_missing_from_a_split_is_dropped_multi_label() -> None:
    samples = [_sample(i, ("common",)) for i in range(40)] + [
        _sample(100, ("common", "rare"), (Box(0, 0, 2, 2, "rare"), Box(0, 0, 1, 1, "lion - rare", "attribute"))),
        _sample(101, ("rare",)),
    ]
    dataset = Dataset(samples=tuple(samples), classes=("common", "rare"), multi_label=True)
    outcome = stratified_split(dataset, seed=0)
    assert outcome.dropped_classes == ("rare",)
    assert outcome.removed_samples == 0  # multi-label images keep their place without the label
    assert len(outcome.dataset) == 42
    kept = {s.id: s for s in outcome.dataset.samples}
    assert kept["img0100"].labels == ("common",) and kept["img0100"].boxes == ()
    assert kept["img0101"].labels == ()


def test_every_kept_class_is_in_every_split() -> None:
    dataset = split_dataset(_single_label({"A": 12, "B": 9, "C": 31, "D": 2}), seed=3)
    for name in SPLITS:
        present = {c for s in dataset.samples if s.split == name for c in s.labels}
        assert present == set(dataset.classes)
    assert "D" not in dataset.classes


def test_unlabelled_images_are_spread_by_the_overall_fractions() -> None:
    samples = [_sample(i, ()) for i in range(50)] + [_sample(100 + i, ("person",)) for i in range(50)]
    dataset = split_dataset(Dataset(samples=tuple(samples), classes=("person",), multi_label=True), seed=0)
    assert split_counts(dataset) == {"train": 80, "val": 10, "test": 10}
    negatives = [sum(1 for s in dataset.samples if not s.labels and s.split == n) for n in SPLITS]
    assert negatives == [40, 5, 5]


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_bad_fractions_are_refused(fractions: tuple[float, ...]) -> None:
    with pytest.raises(BadInputError):
        split_dataset(_single_label({"A": 10}), seed=0, fractions=fractions)


def test_nothing_left_of_one_class_without_negatives_says_it_cannot_be_classified() -> None:
    for multi_label in (False, True):
        dataset = Dataset(samples=tuple(_sample(i, ("Peter",)) for i in range(4)), classes=("Peter",),
                          multi_label=multi_label)
        message = str(nothing_left_error(dataset, "/collection"))
        assert message.startswith("/collection: every image is of the one class 'Peter'")
        assert "a classifier needs at least two classes" in message and "negatives with no label" in message
        assert "frequent enough" not in message and "\n" not in message


def test_nothing_left_of_rare_classes_says_they_are_too_rare() -> None:
    with_negatives = Dataset(samples=(_sample(0, ("person",)), _sample(1, ()), _sample(2, ())),
                             classes=("person",), multi_label=True)
    two_classes = _single_label({"Peter": 2, "Paul": 1})
    for dataset in (with_negatives, two_classes):
        outcome = stratified_split(dataset, seed=0)
        assert not outcome.dataset.classes
        message = str(nothing_left_error(dataset, "/collection"))
        assert message == "/collection: no class is frequent enough to appear in every split; nothing usable remains"
