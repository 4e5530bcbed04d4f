"""The real People-Art collection loads with its published counts (skipped when it is absent)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from iconolens.data.collections import load_collection


def test_published_counts(peopleart_root: Path) -> None:
    dataset = load_collection(peopleart_root)
    assert dataset.problems == ()
    images = Counter(s.split for s in dataset.samples)
    positives = Counter(s.split for s in dataset.samples if s.labels == ("person",))
    assert (images["train"], positives["train"]) == (690, 225)
    assert (images["val"], positives["val"]) == (587, 189)
    boxes = [b for s in dataset.samples for b in s.boxes]
    assert len(boxes) == 1396
    assert sum(b.difficult for b in boxes) == 179
    # every negative image has no boxes, every positive at least one
    assert all(bool(s.boxes) == bool(s.labels) for s in dataset.samples)
    assert all(0 <= b.x0 < b.x1 <= s.width and 0 <= b.y0 < b.y1 <= s.height for s in dataset.samples for b in s.boxes)


def test_style_task_has_eighteen_styles(peopleart_root: Path) -> None:
    dataset = load_collection(peopleart_root, task="style")
    assert len(dataset.classes) == 18
    assert all(s.labels[0] == s.id.split("/")[0] for s in dataset.samples)
