"""Small, easy collections made on the fly: the classes differ by the colour of a central square."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iconolens.data.records import Dataset, Sample

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def draw_square_image(colour: tuple[int, int, int], size: int, rng: np.random.Generator) -> np.ndarray:
    """Grey noise with a coloured square of random size and place."""
    image = rng.integers(90, 166, size=(size, size, 3)).astype(np.uint8)
    side = int(rng.integers(size // 3, size // 2 + 1))
    x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    image[y0 : y0 + side, x0 : x0 + side] = colour
    return image


def write_square_collection(
    folder: Path,
    per_class: dict[str, int] | None = None,
    size: int = 32,
    seed: int = 0,
    splits: tuple[float, float] = (0.6, 0.2),
) -> Dataset:
    """A multi-class Dataset of PNGs with train/val/test splits in each class (60/20/20 by default)."""
    per_class = per_class or {name: 15 for name in COLOURS}
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for cls, count in per_class.items():
        n_train = int(round(splits[0] * count))
        n_val = int(round(splits[1] * count))
        for i in range(count):
            path = folder / f"{cls}_{i:03d}.png"
            Image.fromarray(draw_square_image(COLOURS[cls], size, rng)).save(path)
            split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            samples.append(Sample(f"{cls}_{i:03d}", path, (cls,), width=size, height=size, split=split))
    return Dataset(tuple(samples), tuple(per_class), root=folder)


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return write_square_collection(tmp_path_factory.mktemp("squares"))


@pytest.fixture
def make_squares():
    """The collection writer itself, for tests that need another class balance or split."""
    return write_square_collection


@pytest.fixture(scope="session")
def tiny_squares(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Six images per class (four train, one val, one test): enough for tests of mechanics, not accuracy."""
    return write_square_collection(
        tmp_path_factory.mktemp("tiny"), {name: 6 for name in COLOURS}, seed=1, splits=(0.67, 0.17)
    )
