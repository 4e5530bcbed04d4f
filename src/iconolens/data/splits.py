"""Seeded, stratified train/val/test splits that keep every class in every split.

Multi-label collections use iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011): the
rarest remaining label is placed first, each of its images going to the split that still wants most of
that label. For single-label collections this reduces to ordinary per-class stratification.

A class too rare to appear in every split cannot be trained, validated and tested, so it is dropped
from the labels and the class list (single-label images left without a label are removed; multi-label
images simply lose that label). ``stratified_split`` says which classes went.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from iconolens.data.records import Dataset, Sample
from iconolens.errors import BadInputError

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class SplitOutcome:
    """The split dataset and what had to go to keep every class in every split."""

    dataset: Dataset
    dropped_classes: tuple[str, ...]
    removed_samples: int


def _check_fractions(fractions: tuple[float, ...]) -> np.ndarray:
    values = np.asarray(fractions, dtype=np.float64)
    if values.shape != (len(SPLIT_NAMES),) or np.any(values < 0) or not np.isclose(values.sum(), 1.0):
        raise BadInputError(
            f"split fractions must be {len(SPLIT_NAMES)} non-negative numbers summing to 1, got {fractions}"
        )
    return values


def _best(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The candidates whose value is the largest (several when tied)."""
    best = values[candidates].max()
    return candidates[np.isclose(values[candidates], best)]


def assign_splits(
    label_sets: list[frozenset[int]], n_classes: int, fractions: np.ndarray, seed: int
) -> np.ndarray:
    """Split index (0, 1, 2) for each item, by iterative stratification of its label set."""
    rng = np.random.default_rng(seed)
    n = len(label_sets)
    counts = np.zeros(n_classes, dtype=np.int64)
    for labels in label_sets:
        for c in labels:
            counts[c] += 1
    wanted_total = fractions * n
    wanted = counts[:, None] * fractions[None, :]
    assignment = np.full(n, -1, dtype=np.int64)
    remaining = np.zeros(n_classes, dtype=np.int64) + counts
    holders: list[list[int]] = [[] for _ in range(n_classes)]
    for i, labels in enumerate(label_sets):
        for c in labels:
            holders[c].append(i)
    all_splits = np.arange(len(fractions))
    while remaining.sum() > 0:
        live = np.flatnonzero(remaining > 0)
        rarest = live[remaining[live] == remaining[live].min()]
        label = int(rng.choice(rarest))
        items = [i for i in holders[label] if assignment[i] < 0]
        for i in rng.permutation(items):
            choice = _best(wanted[label], all_splits)
            if len(choice) > 1:
                choice = _best(wanted_total, choice)
            split = int(rng.choice(choice))
            assignment[i] = split
            wanted_total[split] -= 1
            for c in label_sets[i]:
                wanted[c, split] -= 1
                remaining[c] -= 1
    for i in rng.permutation(np.flatnonzero(assignment < 0)):
        split = int(rng.choice(_best(wanted_total, all_splits)))
        assignment[i] = split
        wanted_total[split] -= 1
    return assignment


def stratified_split(
    dataset: Dataset, seed: int, fractions: tuple[float, ...] = DEFAULT_FRACTIONS
) -> SplitOutcome:
    """Set ``Sample.split`` to train/val/test; see the module notes. The same seed gives the same split."""
    values = _check_fractions(tuple(fractions))
    samples = sorted(dataset.samples, key=lambda s: s.id)  # the split must not depend on reading order
    index = dataset.class_index()
    label_sets = [frozenset(index[c] for c in s.labels if c in index) for s in samples]
    assignment = assign_splits(label_sets, len(dataset.classes), values, seed)

    used = [j for j in range(len(SPLIT_NAMES)) if values[j] > 0]
    present = [set() for _ in SPLIT_NAMES]
    for labels, split in zip(label_sets, assignment):
        present[split].update(labels)
    kept = set.intersection(*(present[j] for j in used)) if used else set()
    dropped = tuple(c for i, c in enumerate(dataset.classes) if i not in kept)
    dropped_set = set(dropped)

    split_of = {s.id: int(j) for s, j in zip(samples, assignment)}
    out: list[Sample] = []
    removed = 0
    for sample in dataset.samples:
        split = split_of[sample.id]
        labels = tuple(c for c in sample.labels if c not in dropped_set)
        if not dataset.multi_label and not labels:
            removed += 1
            continue
        boxes = tuple(b for b in sample.boxes if b.figure_class not in dropped_set)
        out.append(replace(sample, labels=labels, boxes=boxes, split=SPLIT_NAMES[split]))
    classes = tuple(c for c in dataset.classes if c not in dropped_set)
    return SplitOutcome(
        dataset=replace(dataset, samples=tuple(out), classes=classes),
        dropped_classes=dropped,
        removed_samples=removed,
    )


def split_dataset(
    dataset: Dataset, seed: int, fractions: tuple[float, ...] = DEFAULT_FRACTIONS
) -> Dataset:
    """``dataset`` with every sample given a split (``stratified_split`` without the report)."""
    return stratified_split(dataset, seed, fractions).dataset


def split_counts(dataset: Dataset) -> dict[str, int]:
    """Number of samples in each split, in train/val/test order (unsplit samples under ``none``)."""
    counts: dict[str, int] = {name: 0 for name in SPLIT_NAMES}
    for sample in dataset.samples:
        key = sample.split if sample.split is not None else "none"
        counts[key] = counts.get(key, 0) + 1
    return counts


def nothing_left_error(dataset: Dataset, source: str | Path | None = None) -> BadInputError:
    """Why splitting ``dataset`` (the collection before the split) left no class, naming ``source``.

    A collection of one class without negative images cannot be classified at all, however many images it
    has, so that is what is said then; otherwise every class was too rare to appear in every split.
    """
    if len(dataset.classes) == 1 and all(sample.labels for sample in dataset.samples):
        cls = dataset.classes[0]
        return BadInputError(
            f"every image is of the one class {cls!r} and a classifier needs at least two classes: add images of "
            f"another class, or, for a presence task ({cls} or not), images without {cls} as negatives with no "
            "label (e.g. CSV rows `path,` with an empty labels field, making a one-class multi-label collection)",
            source,
        )
    return BadInputError("no class is frequent enough to appear in every split; nothing usable remains", source)
