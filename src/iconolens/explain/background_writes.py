"""Map files written by a thread, so that the network works on the next batch while files are written.

Every map file is written atomically and synced to disk (``MapStore.write``), about a millisecond each, three
files per image with three methods: on a collection that is a tenth of the network's own time, spent with the
cores idle. Writing from one thread behind a bounded queue overlaps it with the next batch (the write and the
sync release the GIL). The file's bytes are made in the caller's thread (some 60 microseconds), so the writing
thread runs almost no Python and seldom holds the GIL the network needs between its operations. Nothing changes
in what is written: the same bytes as ``MapStore.write``.

An error in the thread is raised in the caller at its next write or at ``close``; what was queued before it is
still written, so a run stopped by a full disk resumes from every map that reached it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np

from iconolens.atomic import write_bytes_atomically
from iconolens.explain.store import MapStore

_STOP = object()


class BackgroundWriter:
    """Writes map files from a thread, in order, at most ``depth`` behind the caller."""

    def __init__(self, depth: int = 64) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="iconolens-map-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is None:  # after an error the rest is dropped, and the caller is told at once
                path, data = item
                try:
                    write_bytes_atomically(path, data)
                except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                    self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write(self, store: MapStore, sample_id: str, maps: np.ndarray, scores: np.ndarray) -> None:
        """Queue one image's map file, its bytes made now (so the caller may reuse its buffers at once)."""
        self._raise()
        self._queue.put((store.path_for(sample_id), MapStore.encode(sample_id, maps, scores)))

    def close(self) -> None:
        """Wait for every queued write; raise the thread's error, if any."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None:
            self.close()
        else:  # the caller's own error wins; queued maps are still written
            try:
                self.close()
            except BaseException:  # noqa: BLE001
                pass
