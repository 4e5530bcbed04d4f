"""One entry point for every collection format, chosen by looking at the path.

Auto-detection: a run directory or ``dataset.json`` -> the run's dataset; a ``.csv`` file -> CSV
``path,labels``; a ``.json`` file -> COCO; a folder with ``Annotations/`` and ``JPEGImages/`` -> VOC
(People-Art included); a folder holding ``annotations.json`` -> COCO; any other folder -> a folder per class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from iconolens.data.coco import read_coco
from iconolens.data.csv_labels import read_csv
from iconolens.data.dataset_json import is_dataset_json, load_dataset_json
from iconolens.data.folder import read_folder
from iconolens.data.images import DEFAULT_MAX_PIXELS
from iconolens.data.records import Dataset
from iconolens.data.voc import Task, is_voc_tree, read_voc
from iconolens.errors import BadInputError

Format = Literal["auto", "folder", "csv", "coco", "voc", "dataset"]
FORMATS: tuple[str, ...] = ("auto", "folder", "csv", "coco", "voc", "dataset")


def detect_format(path: str | Path) -> str:
    """The format ``load_collection`` would read ``path`` as."""
    path = Path(path)
    if not path.exists():
        raise BadInputError("collection does not exist", path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return "csv"
        if suffix == ".json":
            return "dataset" if is_dataset_json(path) else "coco"
        raise BadInputError(
            "cannot tell the collection format from this file; give a folder, a .csv or a .json file", path
        )
    if (path / "dataset.json").is_file():
        return "dataset"
    if is_voc_tree(path):
        return "voc"
    if (path / "annotations.json").is_file():
        return "coco"
    return "folder"


def load_collection(
    path: str | Path,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    format: Format = "auto",
    task: Task = "presence",
    decode: bool = False,
    allow_empty: bool = False,
) -> Dataset:
    """Read the collection at ``path``; images that cannot be used are listed in ``problems``.

    ``decode`` decodes every image instead of reading headers only (slower; also finds damage inside
    the pixel data). ``task`` chooses the labels of a VOC tree (``presence`` or ``style``). Raises
    BadInputError when nothing usable remains, naming the first problem, unless ``allow_empty``.
    """
    path = Path(path)
    chosen = detect_format(path) if format == "auto" else format
    if chosen not in FORMATS or chosen == "auto":
        raise BadInputError(f"unknown collection format {format!r}; choose one of {', '.join(FORMATS)}")
    if chosen == "csv":
        dataset = read_csv(path, max_pixels=max_pixels, decode=decode)
    elif chosen == "coco":
        source = path / "annotations.json" if path.is_dir() else path
        dataset = read_coco(source, max_pixels=max_pixels, decode=decode)
    elif chosen == "voc":
        dataset = read_voc(path, task=task, max_pixels=max_pixels, decode=decode)
    elif chosen == "dataset":
        dataset = load_dataset_json(path / "dataset.json" if path.is_dir() else path)
    else:
        dataset = read_folder(path, max_pixels=max_pixels, decode=decode)
    if not dataset.samples and not allow_empty:
        raise nothing_usable_error(dataset, path)
    return dataset


def nothing_usable_error(dataset: Dataset, path: str | Path) -> BadInputError:
    """The error for a collection where every image had to be skipped."""
    first = dataset.problems[0] if dataset.problems else None
    detail = f"; the first problem: {first.path}: {first.message}" if first else ""
    return BadInputError(f"no usable images in the collection ({len(dataset.problems)} skipped){detail}", path)
