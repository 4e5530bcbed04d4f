"""One entry point for every collection format, chosen by looking at the path.

Auto-detection: an ``http://`` or ``https://`` URL -> a IIIF manifest or collection; a run directory or
``dataset.json`` -> the run's dataset; a ``.csv`` file -> CSV ``path,labels``; a ``.json`` file -> a IIIF
manifest when its ``@context`` names the Presentation API, else COCO; a folder with ``Annotations/`` and
``JPEGImages/`` -> VOC (People-Art included); a folder holding ``annotations.json`` -> COCO; any other
folder -> a folder per class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from iconolens.data.coco import read_coco
from iconolens.data.csv_labels import read_csv
from iconolens.data.dataset_json import is_dataset_json, load_dataset_json
from iconolens.data.downloads import is_url
from iconolens.data.folder import read_folder
from iconolens.data.iiif import IIIFOptions, is_iiif_json, read_iiif
from iconolens.data.images import DEFAULT_MAX_PIXELS
from iconolens.data.records import Dataset
from iconolens.data.voc import Task, is_voc_tree, read_voc
from iconolens.errors import BadInputError

Format = Literal["auto", "folder", "csv", "coco", "voc", "dataset", "iiif"]
FORMATS: tuple[str, ...] = ("auto", "folder", "csv", "coco", "voc", "dataset", "iiif")


def detect_format(path: str | Path) -> str:
    """The format ``load_collection`` would read ``path`` (a path, or a URL given as a string) as."""
    if is_url(path):
        return "iiif"
    path = Path(path)
    if not path.exists():
        raise BadInputError("collection does not exist", path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return "csv"
        if suffix == ".json":
            if is_dataset_json(path):
                return "dataset"
            return "iiif" if is_iiif_json(path) else "coco"
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
    iiif: IIIFOptions | None = None,
) -> Dataset:
    """Read the collection at ``path``; images that cannot be used are listed in ``problems``.

    ``decode`` decodes every image instead of reading headers only (slower; also finds damage inside
    the pixel data). ``task`` chooses the labels of a VOC tree (``presence`` or ``style``). ``iiif`` says
    how to read a IIIF manifest (image size, label source, cache; see ``iiif.IIIFOptions``); ``path`` may
    then be an http(s) URL, given as a string. Raises BadInputError when nothing usable remains, naming
    the first problem, unless ``allow_empty``.
    """
    chosen = detect_format(path) if format == "auto" else format
    if chosen not in FORMATS or chosen == "auto":
        raise BadInputError(f"unknown collection format {format!r}; choose one of {', '.join(FORMATS)}")
    if is_url(path) and chosen != "iiif":
        raise BadInputError(f"a URL can only be read as a IIIF manifest or collection, not as {chosen}", path)
    if chosen != "iiif" and iiif is not None and (iiif.label_field is not None or iiif.labels_csv is not None):
        raise BadInputError(
            f"a label field or labels CSV applies to IIIF manifests only; this collection is read as {chosen}", path
        )
    if chosen == "iiif":
        dataset = read_iiif(path, iiif or IIIFOptions(), max_pixels=max_pixels, decode=decode)
    elif chosen == "csv":
        dataset = read_csv(path, max_pixels=max_pixels, decode=decode)
    elif chosen == "coco":
        source = Path(path) / "annotations.json" if Path(path).is_dir() else path
        dataset = read_coco(source, max_pixels=max_pixels, decode=decode)
    elif chosen == "voc":
        dataset = read_voc(path, task=task, max_pixels=max_pixels, decode=decode)
    elif chosen == "dataset":
        dataset = load_dataset_json(Path(path) / "dataset.json" if Path(path).is_dir() else path)
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
