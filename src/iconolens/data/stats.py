"""What a collection holds: images, labels per image, classes, boxes, attributes per class."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from iconolens.data.attributes import AttributeFrequency, attribute_frequencies
from iconolens.data.records import Dataset

_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class Distribution:
    """How often each value of a per-image count occurs, with its mean."""

    histogram: dict[int, int]
    mean: float

    @staticmethod
    def of(values: list[int]) -> "Distribution":
        counts = Counter(values)
        mean = sum(values) / len(values) if values else 0.0
        return Distribution(histogram=dict(sorted(counts.items())), mean=mean)


@dataclass(frozen=True)
class DatasetStats:
    """Summary numbers of a collection (``collection_stats``), convertible to JSON."""

    images: int
    classes: int
    multi_label: bool
    splits: dict[str, int]
    labels_per_image: Distribution
    class_images: dict[str, int]
    figure_boxes: int
    attribute_boxes: int
    difficult_boxes: int
    boxes_per_image: Distribution
    attributes: tuple[AttributeFrequency, ...]
    problems: int

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("labels_per_image", "boxes_per_image"):
            data[key]["histogram"] = {str(k): v for k, v in data[key]["histogram"].items()}
        data["attributes"] = [{**asdict(a), "fraction": a.fraction} for a in self.attributes]
        return data


def collection_stats(dataset: Dataset) -> DatasetStats:
    """Count images, labels, boxes and attribute frequencies of ``dataset``."""
    samples = dataset.samples
    class_images = Counter(label for s in samples for label in s.labels)
    splits = Counter(s.split or "none" for s in samples)
    boxes = [b for s in samples for b in s.boxes]
    return DatasetStats(
        images=len(samples),
        classes=len(dataset.classes),
        multi_label=dataset.multi_label,
        splits=dict(sorted(splits.items(), key=lambda kv: (_SPLIT_ORDER.get(kv[0], len(_SPLIT_ORDER)), kv[0]))),
        labels_per_image=Distribution.of([len(s.labels) for s in samples]),
        class_images={c: class_images.get(c, 0) for c in dataset.classes},
        figure_boxes=sum(1 for b in boxes if b.level == "figure"),
        attribute_boxes=sum(1 for b in boxes if b.level == "attribute"),
        difficult_boxes=sum(1 for b in boxes if b.difficult),
        boxes_per_image=Distribution.of([len(s.boxes) for s in samples]),
        attributes=attribute_frequencies(dataset),
        problems=len(dataset.problems),
    )
