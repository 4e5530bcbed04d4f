"""Fixtures shared by every area's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PEOPLEART = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "peopleart"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def peopleart_root() -> Path:
    """The real People-Art collection beside the repository; tests needing it skip when it is absent."""
    if not (PEOPLEART / "Annotations" / "person_train.txt").exists():
        pytest.skip(f"People-Art not found at {PEOPLEART}")
    return PEOPLEART
