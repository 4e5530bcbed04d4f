"""Iconographic attributes per class: how often each appears, and keeping only the common ones.

An attribute box ``"keys - Peter"`` belongs to class ``Peter``. Its frequency is the fraction of the
images labelled ``Peter`` that hold at least one such box. Attributes seen in only a handful of a class's
images say little about how the class is recognised, so they are filtered out (default: under 5%).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from iconolens.data.records import Dataset
from iconolens.errors import BadInputError

DEFAULT_MIN_FRACTION = 0.05


@dataclass(frozen=True)
class AttributeFrequency:
    """How many of its class's images show an attribute."""

    label: str  # "keys - Peter"
    attribute: str  # "keys"
    figure_class: str  # "Peter"
    images: int  # images labelled with the class that hold the attribute
    class_images: int  # images labelled with the class

    @property
    def fraction(self) -> float:
        return self.images / self.class_images if self.class_images else 0.0


def attribute_frequencies(dataset: Dataset) -> tuple[AttributeFrequency, ...]:
    """Every attribute label of ``dataset`` with its frequency, by class then attribute name."""
    class_images = Counter(label for s in dataset.samples for label in s.labels)
    holders: Counter[str] = Counter()
    names: dict[str, tuple[str, str]] = {}
    for sample in dataset.samples:
        labels = set(sample.labels)
        shown = {b.label for b in sample.boxes if b.level == "attribute"}
        for box in sample.boxes:
            if box.level == "attribute":
                names[box.label] = (box.attribute or box.label, box.figure_class)
        for label in shown:
            if names[label][1] in labels:
                holders[label] += 1
    return tuple(
        AttributeFrequency(
            label=label,
            attribute=attribute,
            figure_class=cls,
            images=holders[label],
            class_images=class_images.get(cls, 0),
        )
        for label, (attribute, cls) in sorted(names.items(), key=lambda kv: (kv[1][1], kv[1][0]))
    )


def filter_attributes(dataset: Dataset, min_fraction: float = DEFAULT_MIN_FRACTION) -> Dataset:
    """``dataset`` without the attribute boxes whose frequency in their class is below ``min_fraction``."""
    if not 0.0 <= min_fraction <= 1.0:
        raise BadInputError(f"the minimum attribute fraction must lie in [0, 1], got {min_fraction}")
    rare = {f.label for f in attribute_frequencies(dataset) if f.fraction < min_fraction}
    if not rare:
        return dataset
    samples = tuple(
        replace(s, boxes=tuple(b for b in s.boxes if not (b.level == "attribute" and b.label in rare)))
        for s in dataset.samples
    )
    return replace(dataset, samples=samples)
