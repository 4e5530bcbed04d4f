"""Build the viewer of any folder iconolens writes: a classifier run, a detector's failure report or D-RISE
explanations; the kind is recognised from the files in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from iconolens.data.records import Sample
from iconolens.errors import BadInputError, IconolensError
from iconolens.evaluate.localisation import image_size_of
from iconolens.viewer.classifier_run import ClassifierRunContent
from iconolens.viewer.content import ViewerImage
from iconolens.viewer.detector_run import (
    explanation_content,
    failure_report_content,
    is_explanation_folder,
    is_failure_report,
)
from iconolens.viewer.site import UnreadableImage, write_viewer


def _classifier_images(content: ClassifierRunContent, samples: list[Sample]) -> Iterator[ViewerImage | UnreadableImage]:
    for sample in samples:
        try:
            height, width = image_size_of(sample)
        except IconolensError as exc:
            yield UnreadableImage(sample.id, str(exc))
            continue
        yield content.image(sample, width, height)


def build_viewer(folder: str | Path, out: str | Path | None = None, split: str | None = None,
                 title: str | None = None) -> Path:
    """Write the viewer of ``folder`` into ``out`` (default ``folder/viewer``); return its ``index.html``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one small map at a time: more threads only add synchronisation
    try:
        return _build(Path(folder), out, split, title)
    finally:
        torch.set_num_threads(threads)


def _build(folder: Path, out: str | Path | None, split: str | None, title: str | None) -> Path:
    if not folder.is_dir():
        raise BadInputError("folder does not exist", folder)
    out = Path(out) if out is not None else folder / "viewer"
    if (folder / "dataset.json").is_file():
        content = ClassifierRunContent(folder, split, cache=out / "data" / "measures-cache.json")
        samples = content.samples()
        page = write_viewer(out, lambda: content.header(title or f"iconolens: {folder.resolve().name}"),
                            _classifier_images(content, samples), total=len(samples))
        content.save_cache()
        return page
    if is_failure_report(folder):
        header, images = failure_report_content(folder)
    elif is_explanation_folder(folder):
        header, images = explanation_content(folder)
    else:
        raise BadInputError(
            "nothing to view here: expected a run folder (dataset.json), a failure report (failures.json from "
            "`iconolens detect eval --failures`) or D-RISE explanations (from `iconolens detect explain`)", folder)
    if split:
        images = [i for i in images if i.split == split]
    if title:
        from dataclasses import replace

        header = replace(header, title=title)
    return write_viewer(out, header, images, total=len(images))
