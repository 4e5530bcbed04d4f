"""MapStore: raw saliency maps of one method, one file per image, at feature resolution.

Each image's file holds ``maps`` (float16, shape ``(C, h, w)``, all classes of the model in its class
order, before normalisation) and ``scores`` (float32, ``(C,)``: the model's class probabilities for that
image). ``meta.json`` records the classes and the method's parameters. Files are written atomically, so an
interrupted run leaves only whole files and a re-run skips them.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iconolens.atomic import write_bytes_atomically, write_json_atomically
from iconolens.errors import BadInputError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def map_file_name(sample_id: str) -> str:
    """A file name that is safe on every file system and distinct for distinct ids."""
    digest = hashlib.sha1(sample_id.encode("utf-8")).hexdigest()[:10]
    stem = _UNSAFE.sub("_", sample_id)[-80:].strip("._") or "image"
    return f"{stem}.{digest}.npz"


class MapStore:
    """Reads and writes the maps of one method under ``RUN/maps/<method>/``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @property
    def meta_path(self) -> Path:
        return self.directory / "meta.json"

    def initialise(self, classes: Sequence[str], method: str, params: dict[str, Any]) -> None:
        """Create the store, or check that an existing one was made with the same classes and method."""
        meta = {"method": method, "classes": list(classes), "params": params}
        if self.meta_path.exists():
            old = self.meta()
            if old.get("classes") != list(classes) or old.get("method") != method:
                raise BadInputError(
                    "maps here were made for other classes or another method; "
                    "remove the folder or choose another run directory",
                    self.directory,
                )
            if old.get("params", params) != params:
                changed = sorted(k for k in {**old["params"], **params} if old["params"].get(k) != params.get(k))
                raise BadInputError(
                    f"maps here were made with other settings ({', '.join(changed)}); resuming would mix them: "
                    "remove the folder or choose another run directory",
                    self.directory,
                )
            return
        write_json_atomically(self.meta_path, meta)

    def meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadInputError("no maps stored here (meta.json is missing)", self.directory) from None
        except json.JSONDecodeError as exc:
            raise BadInputError(f"meta.json is not valid JSON ({exc.msg})", self.meta_path) from None

    @property
    def classes(self) -> list[str]:
        return list(self.meta()["classes"])

    def path_for(self, sample_id: str) -> Path:
        return self.directory / map_file_name(sample_id)

    def has(self, sample_id: str) -> bool:
        return self.path_for(sample_id).exists()

    def write(self, sample_id: str, maps: np.ndarray, scores: np.ndarray) -> Path:
        return write_bytes_atomically(self.path_for(sample_id), self.encode(sample_id, maps, scores))

    @staticmethod
    def encode(sample_id: str, maps: np.ndarray, scores: np.ndarray) -> bytes:
        """The bytes of one image's map file: maps as float16 ``(C, h, w)``, scores ``(C,)`` and the id."""
        maps = np.asarray(maps)
        scores = np.asarray(scores, dtype=np.float32)
        if maps.ndim != 3 or scores.shape != (maps.shape[0],):
            raise ValueError(f"maps must be (C, h, w) and scores (C,); got {maps.shape} and {scores.shape}")
        buffer = io.BytesIO()
        np.savez(buffer, maps=maps.astype(np.float16), scores=scores, sample_id=np.array(sample_id))
        return buffer.getvalue()

    def read(self, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The raw maps as float32 ``(C, h, w)`` and the class probabilities ``(C,)``."""
        path = self.path_for(sample_id)
        try:
            with np.load(path) as data:
                return data["maps"].astype(np.float32), data["scores"].astype(np.float32)
        except FileNotFoundError:
            raise BadInputError(f"no maps stored for image {sample_id!r}", self.directory) from None
        except (ValueError, KeyError, OSError) as exc:
            raise BadInputError(f"map file is damaged ({exc})", path) from None

    def sample_ids(self) -> list[str]:
        """Ids of every image with stored maps."""
        ids = []
        for path in sorted(self.directory.glob("*.npz")):
            with np.load(path) as data:
                ids.append(str(data["sample_id"]))
        return ids
