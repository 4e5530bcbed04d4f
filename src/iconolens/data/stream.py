"""Images of a run decoded and resized in worker processes while the network works on the previous batch.

Decoding a painting (a few megapixels of JPEG) and resizing it costs a tenth to a third of a forward pass;
done in the same process it adds to every batch, done in ``workers`` processes it overlaps with the network.
Workers hand over uint8 tensors (a quarter of float32's bytes) in the order of the samples; an image that cannot
be read comes back as a problem sentence, never as an exception that would stop the run.

``decoded_batches`` gives square batches for classifiers; ``prepared_ahead`` gives any per-item preparation (a
detector's image at its own shape, say) one item at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset

from iconolens.data.images import DEFAULT_MAX_PIXELS, load_image
from iconolens.data.records import Sample
from iconolens.errors import IconolensError
from iconolens.models.transforms import image_to_uint8


@dataclass
class DecodedBatch:
    """The readable samples of one batch, their images ``(B, 3, S, S)`` uint8, and the unreadable ones."""

    samples: list[Sample]
    images: torch.Tensor
    problems: list[dict[str, str]] = field(default_factory=list)


class _Decoding(Dataset):
    def __init__(self, samples: Sequence[Sample], size: int, max_pixels: int | None) -> None:
        self.samples, self.size, self.max_pixels = list(samples), size, max_pixels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            image = load_image(self.samples[index].path, max_pixels=self.max_pixels)
            return index, image_to_uint8(image, self.size), None
        except IconolensError as exc:
            return index, None, str(exc)


def _collate(
    items: list[tuple[int, torch.Tensor | None, str | None]], samples: list[Sample], size: int
) -> DecodedBatch:
    good = [(i, t) for i, t, _ in items if t is not None]
    problems = [
        {"id": samples[i].id, "path": str(samples[i].path), "message": message}
        for i, t, message in items if t is None
    ]
    images = torch.stack([t for _, t in good]) if good else torch.empty((0, 3, size, size), dtype=torch.uint8)
    return DecodedBatch([samples[i] for i, _ in good], images, problems)


def decoded_batches(
    samples: Sequence[Sample],
    size: int,
    batch_size: int,
    workers: int = 0,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Iterator[DecodedBatch]:
    """Batches of ``samples`` decoded and resized to ``size x size``, in order; ``workers=0`` decodes in process."""
    dataset = _Decoding(samples, size, max_pixels)
    collate = partial(_collate, samples=dataset.samples, size=size)  # picklable, for spawned workers too
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
        prefetch_factor=2 if workers else None, persistent_workers=False,
    )
    yield from loader


Item = TypeVar("Item")


class _Preparing(Dataset):
    def __init__(self, items: Sequence[Any], prepare: Callable[[Any], Any]) -> None:
        self.items, self.prepare = list(items), prepare

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, str | None]:
        try:
            return self.prepare(self.items[index]), None
        except IconolensError as exc:
            return None, str(exc)


def _as_is(item: Any) -> Any:
    return item


def prepared_ahead(
    items: Sequence[Item], prepare: Callable[[Item], Any], workers: int = 1
) -> Iterator[tuple[Any, str | None]]:
    """``(prepare(item), None)`` for every item in order, or ``(None, problem)`` where it raised an
    IconolensError; computed in ``workers`` processes ahead of the caller (``workers=0``: in line)."""
    loader = DataLoader(
        _Preparing(items, prepare), batch_size=None, shuffle=False, num_workers=workers, collate_fn=_as_is,
        prefetch_factor=2 if workers else None, persistent_workers=False,
    )
    yield from loader
