"""Atomic file writes: a temporary file in the same folder, then a rename.

A reader (or a resumed run) sees either the old file or the whole new one, never half of it. The file gets
the permissions any other program's new file gets under the user's umask (``mkstemp`` alone would leave it
readable by its owner only, and a report copied to a web server or a run shared with a colleague unreadable).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write`` on a temporary binary file next to ``path`` and move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    return write_atomically(path, lambda handle: handle.write(data))


def write_text_atomically(path: str | Path, text: str) -> Path:
    return write_bytes_atomically(path, text.encode("utf-8"))


def write_array_atomically(path: str | Path, array: Any) -> Path:
    """An array as a ``.npy`` file (no pickled objects), written atomically."""
    import numpy as np

    values = np.asarray(array)
    return write_atomically(path, lambda handle: np.save(handle, values, allow_pickle=False))


def write_json_atomically(path: str | Path, obj: Any) -> Path:
    return write_text_atomically(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
