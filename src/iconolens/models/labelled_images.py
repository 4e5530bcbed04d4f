"""A split of a Dataset as tensors a classifier trains on: resized uint8 images and their targets.

Also the checks that make training meaningful: every class has training images, and no val/test label
is one the model never saw. Unreadable images are skipped and listed, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from iconolens.data.images import DEFAULT_MAX_PIXELS
from iconolens.data.records import Dataset, Problem
from iconolens.data.stream import decoded_batches
from iconolens.errors import BadAnnotationError
from iconolens.models.meta import Task
from iconolens.progress import progress

LOAD_BATCH = 16


@dataclass(frozen=True)
class LabelledImages:
    """Images (N, 3, S, S) uint8 with targets: (N,) class indices, or (N, C) 0/1 floats (multi-label)."""

    images: torch.Tensor
    targets: torch.Tensor
    sample_ids: tuple[str, ...]
    task: Task
    num_classes: int
    problems: tuple[Problem, ...] = ()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def indicator(self) -> np.ndarray:
        """(N, C) 0/1 matrix of true labels, whatever the task."""
        if self.task == "multilabel":
            return self.targets.numpy().astype(np.int64)
        out = np.zeros((len(self), self.num_classes), dtype=np.int64)
        out[np.arange(len(self)), self.targets.numpy()] = 1
        return out


def resolve_task(dataset: Dataset, task: str = "auto") -> Task:
    """``auto`` means multi-label when the dataset says so or any image carries more than one label."""
    if task in ("multiclass", "multilabel"):
        return task  # type: ignore[return-value]
    if task != "auto":
        raise ValueError(f"task must be auto, multiclass or multilabel, not {task!r}")
    if dataset.multi_label or any(len(set(s.labels)) > 1 for s in dataset.samples):
        return "multilabel"
    return "multiclass"


def check_classes(dataset: Dataset, task: Task, source: str | Path | None = None) -> None:
    """Refuse, in one sentence, a class list a classifier cannot be trained and judged on."""
    classes = set(dataset.classes)
    where = source if source is not None else dataset.root
    for sample in dataset.samples:
        unknown = [label for label in sample.labels if label not in classes]
        if unknown:
            raise BadAnnotationError(
                f"image {sample.id!r} has label {unknown[0]!r}, which is not in the class list", where
            )
        if task == "multiclass" and len(set(sample.labels)) != 1 and sample.split in ("train", "val", "test"):
            raise BadAnnotationError(
                f"image {sample.id!r} has {len(set(sample.labels))} labels; a multi-class task needs exactly one "
                "(use --task multilabel)",
                where,
            )
    counts = {split: {c: 0 for c in dataset.classes} for split in ("train", "val", "test")}
    for sample in dataset.samples:
        if sample.split in counts:
            for label in set(sample.labels):
                counts[sample.split][label] += 1
    if not any(counts["train"].values()):
        raise BadAnnotationError("no image is in the train split (run `iconolens data split` first)", where)
    for cls in dataset.classes:
        if counts["train"][cls]:
            continue
        for split in ("val", "test"):
            if counts[split][cls]:
                raise BadAnnotationError(
                    f"label {cls!r} appears in the {split} split but in no training image", where
                )
        raise BadAnnotationError(f"class {cls!r} has no images (empty class)", where)
    if task == "multiclass" and len(dataset.classes) < 2:
        raise BadAnnotationError("a classifier needs at least two classes", where)


def load_split(
    dataset: Dataset,
    split: str | None,
    image_size: int,
    task: Task,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    workers: int = 1,
) -> LabelledImages:
    """Decode and resize the images of ``split`` (all samples when None), in ``workers`` processes beside this
    one; bad images are listed, not fatal."""
    index = dataset.class_index()
    samples = [s for s in dataset.samples if split is None or s.split == split]
    images: list[torch.Tensor] = []
    targets: list[object] = []
    ids: list[str] = []
    problems: list[Problem] = []
    batches = decoded_batches(samples, image_size, LOAD_BATCH, workers=workers, max_pixels=max_pixels)
    for batch in progress(batches, f"loading {split or 'all'} images", total=-(-len(samples) // LOAD_BATCH)):
        problems.extend(Problem(p["path"], p["message"]) for p in batch.problems)
        images.extend(batch.images)
        for sample in batch.samples:
            ids.append(sample.id)
            if task == "multilabel":
                row = np.zeros(len(dataset.classes), dtype=np.float32)
                row[[index[label] for label in sample.labels]] = 1.0
                targets.append(row)
            else:
                targets.append(index[sample.labels[0]])
    if images:
        stacked = torch.stack(images)
    else:
        stacked = torch.zeros((0, 3, image_size, image_size), dtype=torch.uint8)
    if task == "multilabel":
        target_tensor = torch.from_numpy(np.asarray(targets, dtype=np.float32).reshape(-1, len(dataset.classes)))
    else:
        target_tensor = torch.as_tensor(targets, dtype=torch.int64)
    return LabelledImages(stacked, target_tensor, tuple(ids), task, len(dataset.classes), tuple(problems))


def class_counts(data: LabelledImages) -> np.ndarray:
    """Images per class (an image counts for each of its labels)."""
    return data.indicator().sum(axis=0)
