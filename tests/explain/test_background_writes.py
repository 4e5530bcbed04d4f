"""Maps written from a thread: every queued map lands as a direct write would, and errors reach the caller."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iconolens.explain.background_writes import BackgroundWriter
from iconolens.explain.store import MapStore


def _store(folder: Path) -> MapStore:
    store = MapStore(folder)
    store.initialise(["a", "b"], "cam", {})
    return store


def test_every_queued_map_is_written_as_a_direct_write_writes_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    items = [(f"image-{i}", rng.random((2, 7, 7)).astype(np.float32), rng.random(2).astype(np.float32))
             for i in range(200)]
    threaded, direct = _store(tmp_path / "threaded"), _store(tmp_path / "direct")
    with BackgroundWriter(depth=4) as writer:  # a short queue: the caller waits for the thread many times
        for item in items:
            writer.write(threaded, *item)
    for sample_id, maps, scores in items:
        direct.write(sample_id, maps, scores)
        for got, expected in zip(threaded.read(sample_id), direct.read(sample_id)):
            np.testing.assert_array_equal(got, expected)


def test_an_error_in_the_thread_reaches_the_caller_and_what_was_queued_before_it_is_written(tmp_path: Path) -> None:
    good = _store(tmp_path / "good")
    blocked = MapStore(tmp_path / "blocked")
    (tmp_path / "blocked").write_text("a file where the store's folder should be")
    maps, scores = np.ones((2, 3, 3), np.float32), np.ones(2, np.float32)
    writer = BackgroundWriter()
    writer.write(good, "first", maps, scores)
    writer.write(blocked, "second", maps, scores)
    with pytest.raises(OSError):
        writer.close()
    assert good.has("first") and not blocked.has("second")


def test_the_callers_own_error_wins_and_queued_maps_are_still_written(tmp_path: Path) -> None:
    store = _store(tmp_path / "maps")
    with pytest.raises(KeyboardInterrupt):
        with BackgroundWriter() as writer:
            writer.write(store, "queued", np.ones((2, 3, 3), np.float32), np.ones(2, np.float32))
            raise KeyboardInterrupt
    assert store.has("queued")
