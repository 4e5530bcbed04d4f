"""Collection statistics and the attribute filter, on small collections counted by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from iconolens.data.attributes import attribute_frequencies, filter_attributes
from iconolens.data.records import Box, Dataset, Sample
from iconolens.data.stats import collection_stats
from iconolens.errors import BadInputError


def _sample(i: int, labels: tuple[str, ...], boxes: tuple[Box, ...] = (), split: str | None = None) -> Sample:
    return Sample(id=f"s{i}", path=Path(f"/c/s{i}.png"), labels=labels, boxes=boxes, split=split)


def _att(name: str) -> Box:
    return Box(1, 1, 3, 3, name, "attribute")


def test_collection_stats_counted_by_hand() -> None:
    samples = (
        _sample(0, ("Peter",), (Box(0, 0, 5, 5, "Peter"), _att("keys - Peter"), _att("keys - Peter")), "train"),
        _sample(1, ("Peter", "Paul"), (Box(0, 0, 5, 5, "Paul", difficult=True), _att("sword - Paul")), "train"),
        _sample(2, ("Paul",), (), "val"),
        _sample(3, (), (), "test"),
    )
    stats = collection_stats(Dataset(samples=samples, classes=("Peter", "Paul", "Jerome"), multi_label=True))
    assert stats.images == 4
    assert stats.classes == 3
    assert stats.splits == {"train": 2, "val": 1, "test": 1}
    assert stats.labels_per_image.histogram == {0: 1, 1: 2, 2: 1}
    assert stats.labels_per_image.mean == pytest.approx(4 / 4)
    assert stats.class_images == {"Peter": 2, "Paul": 2, "Jerome": 0}
    assert (stats.figure_boxes, stats.attribute_boxes, stats.difficult_boxes) == (2, 3, 1)
    assert stats.boxes_per_image.histogram == {0: 2, 2: 1, 3: 1}
    assert stats.boxes_per_image.mean == pytest.approx(5 / 4)
    keys = {a.label: (a.images, a.class_images) for a in stats.attributes}
    assert keys == {"keys - Peter": (1, 2), "sword - Paul": (1, 2)}  # two keys boxes, one image
    as_json = stats.to_json()
    assert as_json["labels_per_image"]["histogram"] == {"0": 1, "1": 2, "2": 1}
    assert as_json["attributes"][0]["fraction"] == pytest.approx(0.5)


def _collection() -> Dataset:
    """Peter: 20 images; keys in 10, book in 1 (5%), lamb on a Peter image but tied to John.

    Paul: 40 images; sword in 40, book in 1 (2.5%).
    """
    samples = []
    for i in range(20):
        boxes = [Box(0, 0, 9, 9, "Peter")]
        if i < 10:
            boxes.append(_att("keys - Peter"))
        if i == 0:
            boxes.append(_att("book - Peter"))
            boxes.append(_att("lamb - John"))  # John is not a label of this image
        samples.append(_sample(i, ("Peter",), tuple(boxes)))
    for i in range(40):
        boxes = [_att("sword - Paul")] + ([_att("book - Paul")] if i == 0 else [])
        samples.append(_sample(100 + i, ("Paul",), tuple(boxes)))
    return Dataset(samples=tuple(samples), classes=("Peter", "Paul", "John"), multi_label=False)


def test_attribute_frequencies() -> None:
    found = {a.label: (a.attribute, a.figure_class, a.images, a.class_images) for a in attribute_frequencies(_collection())}
    assert found == {
        "keys - Peter": ("keys", "Peter", 10, 20),
        "book - Peter": ("book", "Peter", 1, 20),
        "sword - Paul": ("sword", "Paul", 40, 40),
        "book - Paul": ("book", "Paul", 1, 40),
        "lamb - John": ("lamb", "John", 0, 0),
    }


def test_filter_keeps_attributes_in_at_least_5_percent_of_their_class() -> None:
    filtered = filter_attributes(_collection())  # default 5%
    left = {b.label for s in filtered.samples for b in s.boxes if b.level == "attribute"}
    assert left == {"keys - Peter", "book - Peter", "sword - Paul"}  # book - Peter is exactly 1/20
    assert sum(1 for s in filtered.samples for b in s.boxes if b.level == "figure") == 20  # figures untouched
    stricter = filter_attributes(_collection(), min_fraction=0.6)
    assert {b.label for s in stricter.samples for b in s.boxes if b.level == "attribute"} == {"sword - Paul"}


def test_filter_fraction_must_be_a_fraction() -> None:
    with pytest.raises(BadInputError):
        filter_attributes(_collection(), min_fraction=5)
