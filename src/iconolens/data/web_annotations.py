"""Boxes and detections as W3C Web Annotations in a IIIF Presentation 3 AnnotationPage.

A museum's IIIF viewer (Mirador, the Universal Viewer, Annotorious) draws such a page over the painting, so
boxes derived from saliency maps and a detector's findings can be looked at, and corrected, where curators
already work.

Each box is one Annotation with ``motivation: tagging``, a ``TextualBody`` holding the class label (``purpose:
tagging``) and, when the box has one, a second ``TextualBody`` ``"score 0.873"`` (``purpose: describing``, three
decimals; the exact score stays in the COCO file). Annotation ids are ``<page id>/a<n>``, numbered from 1 in
page order, so the same boxes give the same ids.

The target is ``<canvas id>#xywh=x,y,w,h`` in canvas coordinates when the sample came from a IIIF canvas: the
box in image pixels times ``Sample.canvas_scale()``, rounded outwards to whole canvas units (x and y down, the
right and bottom edges up) so the region covers the whole box, and clipped to the canvas. A sample without a
canvas is targeted by its image file's URI, with the fragment in image pixels, rounded the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from iconolens.atomic import write_json_atomically
from iconolens.data.presentation3 import CONTEXT
from iconolens.data.records import Dataset, Sample
from iconolens.errors import BadInputError

SUFFIX = ".annotations.json"
#: Products of a scale and a coordinate are rounded to this many decimals before flooring or ceiling, so a
#: scale such as 4000 / 1333 that lands a hair above a whole number does not add a unit.
_DECIMALS = 6


class LabelledBox(Protocol):
    """What a box needs to become an annotation: its corners in image pixels and its label (a score is optional)."""

    @property
    def xyxy(self) -> tuple[float, float, float, float]: ...

    label: str


def annotations_path(path: str | Path) -> Path:
    """The sibling AnnotationPage of a JSON file: ``x_detections.json`` -> ``x_detections.annotations.json``."""
    path = Path(path)
    stem = path.name[:-len(".json")] if path.name.endswith(".json") else path.name
    return path.with_name(stem + SUFFIX)


def page_id_for(path: str | Path) -> str:
    """The id of a page written to ``path``: its file URI, so it is unique and resolves where it lies."""
    return Path(path).resolve().as_uri()


def region(xyxy: Sequence[float], scale: tuple[float, float] = (1.0, 1.0),
           bounds: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """A half-open pixel box as integer ``(x, y, w, h)`` after scaling, rounded outwards and clipped to ``bounds``
    (width, height); at least one unit wide and high."""
    sx, sy = scale
    x0, y0, x1, y1 = (round(v * s, _DECIMALS) for v, s in zip(xyxy, (sx, sy, sx, sy)))
    left, top, right, bottom = math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)
    if bounds is not None:
        width, height = bounds
        left, top = min(max(left, 0), width - 1), min(max(top, 0), height - 1)
        right, bottom = min(right, width), min(bottom, height)
    return left, top, max(right - left, 1), max(bottom - top, 1)


def sample_target(sample: Sample) -> tuple[str, tuple[float, float], tuple[int, int] | None]:
    """Where a sample's annotations point: (source URI, image-pixel-to-source scale, source size if known)."""
    if sample.canvas is None:
        size = (sample.width, sample.height) if sample.width and sample.height else None
        return Path(sample.path).resolve().as_uri(), (1.0, 1.0), size
    scale = sample.canvas_scale()
    if scale is None:
        from iconolens.data.images import image_size

        width, height = image_size(sample.path)
        scale = sample.canvas.width / width, sample.canvas.height / height
    return sample.canvas.id, scale, (sample.canvas.width, sample.canvas.height)


def box_target(sample: Sample, xyxy: Sequence[float]) -> str:
    """``<source>#xywh=x,y,w,h`` of a box given in the sample's image pixels."""
    source, scale, bounds = sample_target(sample)
    x, y, w, h = region(xyxy, scale, bounds)
    return f"{source}#xywh={x},{y},{w},{h}"


def box_annotation(target: str, label: str, score: float | None = None) -> dict[str, Any]:
    """One tagging Annotation without its id (``annotation_page`` numbers them)."""
    body: list[dict[str, Any]] = [{"type": "TextualBody", "value": label, "format": "text/plain", "purpose": "tagging"}]
    if score is not None:
        body.append({"type": "TextualBody", "value": f"score {score:.3f}", "format": "text/plain",
                     "purpose": "describing"})
    return {"type": "Annotation", "motivation": "tagging", "body": body, "target": target}


def _samples(dataset: Dataset, ids: Iterable[str]) -> dict[str, Sample]:
    by_id = {s.id: s for s in dataset.samples}
    missing = [sid for sid in ids if sid not in by_id]
    if missing:
        raise BadInputError(f"boxes name image {missing[0]!r}, which is not in the collection")
    return by_id


def boxes_to_annotations(dataset: Dataset, boxes_by_sample: Mapping[str, Sequence[LabelledBox]],
                         with_scores: bool = True) -> list[dict[str, Any]]:
    """Annotations of boxes (derived boxes, pseudo boxes, expert boxes) in the order of ``dataset``'s samples;
    a box's ``score`` attribute, when it has one and ``with_scores``, becomes the describing body."""
    by_id = _samples(dataset, boxes_by_sample)
    items = []
    for sample in dataset.samples:
        if sample.id not in boxes_by_sample:
            continue
        for box in boxes_by_sample[sample.id]:
            score = getattr(box, "score", None) if with_scores else None
            items.append(box_annotation(box_target(by_id[sample.id], box.xyxy), box.label, score))
    return items


def detections_to_annotations(dataset: Dataset, detections: Sequence[Sequence[LabelledBox]]
                              | Mapping[str, Sequence[LabelledBox]]) -> list[dict[str, Any]]:
    """Annotations of a detector's boxes with label and score: one list per sample of ``dataset`` (in its order,
    as ``detect_collection`` returns them) or a mapping from sample id."""
    if not isinstance(detections, Mapping):
        if len(detections) != len(dataset.samples):
            raise BadInputError(f"{len(detections)} lists of detections for {len(dataset.samples)} images")
        detections = {s.id: found for s, found in zip(dataset.samples, detections)}
    return boxes_to_annotations(dataset, detections, with_scores=True)


def annotation_page(items: Iterable[dict[str, Any]], page_id: str,
                    label: str | Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """A Presentation 3 AnnotationPage of ``items``; each gets the id ``<page_id>/a<n>`` (n from 1). ``label`` is
    English text or a ready language map."""
    annotations = [{"id": f"{page_id}/a{n}", **{k: v for k, v in item.items() if k != "id"}}
                   for n, item in enumerate(items, start=1)]
    page: dict[str, Any] = {"@context": CONTEXT, "id": page_id, "type": "AnnotationPage"}
    if label:
        page["label"] = {"en": [label]} if isinstance(label, str) else dict(label)
    page["items"] = annotations
    return page


def write_annotation_page(path: str | Path, page: Mapping[str, Any]) -> Path:
    """Write an AnnotationPage as JSON, atomically."""
    return write_json_atomically(path, dict(page))


def write_boxes_page(path: str | Path, dataset: Dataset, boxes_by_sample: Mapping[str, Sequence[LabelledBox]],
                     label: str | None = None, with_scores: bool = True) -> Path:
    """Write the boxes of a collection as an AnnotationPage at ``path`` (its id is its file URI)."""
    items = boxes_to_annotations(dataset, boxes_by_sample, with_scores=with_scores)
    return write_annotation_page(path, annotation_page(items, page_id_for(path), label))


def write_detections_page(path: str | Path, dataset: Dataset, detections: Sequence[Sequence[LabelledBox]]
                          | Mapping[str, Sequence[LabelledBox]], label: str | None = None) -> Path:
    """Write a detector's boxes as an AnnotationPage at ``path`` (its id is its file URI)."""
    items = detections_to_annotations(dataset, detections)
    return write_annotation_page(path, annotation_page(items, page_id_for(path), label))


def write_explanation_page(path: str | Path, image: str | Path, size: tuple[int, int],
                           targets: Sequence[Mapping[str, Any]], label: str = "explained detections") -> Path:
    """Write the boxes ``detect explain`` explained in one image file (``size`` = (width, height)) as an
    AnnotationPage targeting that file; ``targets`` are its entries with ``box`` (image pixels), ``label`` and
    ``score`` (None for a box given by hand, which then has no score body)."""
    image = Path(image)
    sample = Sample(image.stem, image, (), width=int(size[0]), height=int(size[1]))
    items = [box_annotation(box_target(sample, t["box"]), str(t["label"]), t.get("score")) for t in targets]
    return write_annotation_page(path, annotation_page(items, page_id_for(path), label))
