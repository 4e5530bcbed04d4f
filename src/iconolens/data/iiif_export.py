"""A run as a IIIF Presentation 3 manifest, so a museum's viewer shows each painting with its boxes and maps.

``export_iiif`` writes into one folder (default ``RUN/iiif``), every file named by ``<base URL>/<path in the
folder>``, so publishing the folder at that URL publishes the manifest (the default base is the folder's
file URI, for looking at it on this machine):

    manifest.json                       one Canvas per sample of the run
    images/<sample><suffix>             copies of the images the canvases paint (unless images are linked)
    annotations/<page>/<sample>.json    the run's AnnotationPages of boxes and detections, one per canvas
    overlays/<method>/<sample>_<class>.png  saliency maps as transparent RGBA heat maps (image size)

A sample that came from a IIIF canvas keeps that canvas's id and size; any other gets the canvas
``<base>/canvas/<sample>`` of its image's size. Each canvas paints its image over the whole canvas.

Its ``annotations`` reference the run's box pages (every ``*.annotations.json`` in the run, written by
``iconolens boxes``, ``mil``, ``detect eval`` or ``detect explain``; the pseudo-ground-truth pages are left
out, as they repeat the detection pages' boxes without scores), re-targeted to the exported canvas. They also
embed, per method, a page of ``supplementing`` annotations whose body is an overlay Image targeting the whole
canvas: the map is not the painting (``painting`` is for the canvas's own content) but supplements it, and
viewers offer it as a layer to show over the picture.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iconolens.atomic import write_atomically, write_json_atomically
from iconolens.data.presentation3 import CONTEXT, validate_presentation3
from iconolens.data.records import Dataset, Sample
from iconolens.data.web_annotations import SUFFIX, annotation_page, region, write_annotation_page
from iconolens.errors import BadInputError, IconolensError
from iconolens.progress import progress
from iconolens.run import RunDirectory

_SAFE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_XYWH = re.compile(r"^xywh=(\d+),(\d+),(\d+),(\d+)$")
PSEUDO_SUFFIX = "_pseudo_coco" + SUFFIX


@dataclass(frozen=True)
class ExportResult:
    """What ``export_iiif`` wrote, and the samples it left out with the reason (one sentence each)."""

    manifest: Path
    canvases: int
    box_pages: int
    overlays: int
    skipped: tuple[tuple[str, str], ...] = ()


def safe_name(text: str) -> str:
    """``text`` if it is a safe file name and URL segment, else a cleaned form with a short digest (distinct
    texts give distinct names)."""
    if _SAFE.fullmatch(text):
        return text
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return f"{_UNSAFE.sub('_', text).strip('._')[-60:] or 'x'}-{digest}"


def run_pages(run: RunDirectory, exclude: Path | None = None) -> list[Path]:
    """The run's AnnotationPage files of boxes and detections (not the pseudo-ground-truth copies), sorted."""
    found = []
    for path in sorted(run.root.rglob("*" + SUFFIX)):
        if path.name.endswith(PSEUDO_SUFFIX) or not path.is_file():
            continue
        if exclude is not None and path.resolve().is_relative_to(exclude.resolve()):
            continue
        found.append(path)
    return found


def _image_size(sample: Sample) -> tuple[int, int]:
    if sample.width and sample.height:
        return int(sample.width), int(sample.height)
    from iconolens.data.images import image_size

    return image_size(sample.path)


def _media_type(path: Path) -> str:
    guessed = mimetypes.guess_type(path.name)[0]
    return guessed or "image/jpeg"


def _language_map(text: str) -> dict[str, list[str]]:
    return {"en": [text]}


def _read_page(path: Path) -> dict[str, Any]:
    try:
        page = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"annotation page is not valid JSON ({exc}); delete it or re-run the command that "
                            "wrote it", path) from None
    if not isinstance(page, dict) or page.get("type") != "AnnotationPage" or not isinstance(page.get("items"), list):
        raise BadInputError("not an AnnotationPage (no type AnnotationPage with items)", path)
    return page


def _base_url(base_url: str | None, out: Path) -> str:
    if base_url is None:
        return out.resolve().as_uri()
    base = base_url.rstrip("/")
    if not re.match(r"^(https?|file)://\S+$", base):
        raise BadInputError(f"--base-url must be an http(s):// or file:// URL, not {base_url!r}")
    return base


class _Canvas:
    """One exported canvas: the sample, its id and size, and the scale from image pixels to canvas units."""

    def __init__(self, sample: Sample, canvas_id: str, width: int, height: int, image_size: tuple[int, int]) -> None:
        self.sample, self.id, self.width, self.height = sample, canvas_id, width, height
        self.image_size = image_size
        self.scale = (width / image_size[0], height / image_size[1])


def _retarget(target: Any, canvas: _Canvas, from_file: bool) -> str | None:
    """A run page's target moved onto the exported canvas; a file target's pixels become canvas units."""
    if not isinstance(target, str):
        return None
    _, _, fragment = target.partition("#")
    if not fragment:
        return canvas.id
    found = _XYWH.match(fragment)
    if found is None:
        return None
    x, y, w, h = (int(v) for v in found.groups())
    if from_file:
        x, y, w, h = region((x, y, x + w, y + h), canvas.scale, (canvas.width, canvas.height))
    return f"{canvas.id}#xywh={x},{y},{w},{h}"


def export_iiif(
    run: str | Path,
    out: str | Path | None = None,
    *,
    base_url: str | None = None,
    methods: Sequence[str] | None = None,
    max_images: int | None = None,
    split: str | None = None,
    all_classes: bool = False,
    copy_images: bool = True,
    max_alpha: float = 0.6,
    colormap: str = "jet",
) -> ExportResult:
    """Write the run's samples, box pages and saliency overlays as a IIIF manifest in ``out``.

    ``methods`` chooses the maps drawn (default: every method with maps in the run); each canvas gets the
    overlays of the classes its image is labelled with (the model's most probable class for an unlabelled
    image), or of every class with ``all_classes``. ``copy_images=False`` paints the image files where they
    lie (file URIs) instead of copies, for a manifest used on this machine only.
    """
    import matplotlib

    from iconolens.data.dataset_json import load_dataset_json
    from iconolens.evaluate.localisation import normalised_maps
    from iconolens.explain.store import MapStore
    from iconolens.report.overlays import heatmap_layer, write_png

    rundir = RunDirectory(run)
    if not rundir.root.is_dir():
        raise BadInputError("run directory does not exist", rundir.root)
    if not rundir.dataset_json.is_file():
        raise BadInputError("no dataset.json in the run directory, so there are no samples to export", rundir.root)
    if max_images is not None and max_images < 1:
        raise BadInputError(f"max_images must be at least 1, not {max_images}")
    if colormap not in matplotlib.colormaps:
        raise BadInputError(f"unknown colour map {colormap!r}; try jet, viridis, inferno or magma")
    dataset: Dataset = load_dataset_json(rundir.dataset_json)
    if split is not None:
        dataset = dataset.subset(split)
        if not dataset.samples:
            raise BadInputError(f"no image of the run's dataset is in split {split!r}", rundir.dataset_json)
    available = sorted(p.parent.name for p in rundir.maps_root.glob("*/meta.json")) if rundir.maps_root.is_dir() else []
    if methods:
        for name in methods:
            if name not in available:
                has = f"it has maps of {', '.join(available)}" if available else "it has no maps"
                raise BadInputError(f"no maps of method {name!r} in the run ({has})", rundir.maps_root)
        chosen = list(dict.fromkeys(methods))
    else:
        chosen = available
    stores = {m: MapStore(rundir.maps_dir(m)) for m in chosen}
    store_classes = {m: store.classes for m, store in stores.items()}
    out = Path(out) if out is not None else rundir.root / "iiif"
    base = _base_url(base_url, out)

    def url(rel: str) -> str:
        return f"{base}/{rel}"

    samples = dataset.samples[:max_images] if max_images else dataset.samples
    canvases: list[_Canvas] = []
    skipped: list[tuple[str, str]] = []
    used: set[str] = set()
    for sample in samples:
        try:
            size = _image_size(sample)
        except IconolensError as exc:
            skipped.append((sample.id, f"its image cannot be read ({exc})"))
            continue
        if sample.canvas is not None:
            canvas = _Canvas(sample, sample.canvas.id, sample.canvas.width, sample.canvas.height, size)
        else:
            canvas = _Canvas(sample, url(f"canvas/{safe_name(sample.id)}"), size[0], size[1], size)
        if canvas.id in used:
            skipped.append((sample.id, f"its canvas {canvas.id} is another sample's"))
            continue
        used.add(canvas.id)
        canvases.append(canvas)
    if not canvases:
        raise BadInputError("none of the run's images can be read, so there is nothing to export", rundir.dataset_json)

    # The run's box pages, split by canvas.
    by_source: dict[str, tuple[_Canvas, bool]] = {}
    for canvas in canvases:
        by_source[Path(canvas.sample.path).resolve().as_uri()] = (canvas, canvas.sample.canvas is not None)
        if canvas.sample.canvas is not None:
            by_source[canvas.sample.canvas.id] = (canvas, False)
    referenced: dict[str, list[dict[str, Any]]] = {c.id: [] for c in canvases}
    box_pages = 0
    for path in run_pages(rundir, exclude=out):
        page = _read_page(path)
        name = safe_name("_".join(path.relative_to(rundir.root).parts)[: -len(SUFFIX)])
        label = page.get("label")
        grouped: dict[str, list[dict[str, Any]]] = {}
        for item in page["items"]:
            target = item.get("target") if isinstance(item, dict) else None
            source = target.partition("#")[0] if isinstance(target, str) else None
            if source not in by_source:
                continue  # an image this export leaves out
            canvas, from_file = by_source[source]
            moved = _retarget(target, canvas, from_file)
            if moved is None:
                raise BadInputError(f"annotation {item.get('id')!r} has a target iconolens cannot place ({target!r})",
                                    path)
            grouped.setdefault(canvas.id, []).append({**item, "target": moved})
        for canvas in canvases:
            if canvas.id not in grouped:
                continue
            rel = f"annotations/{name}/{safe_name(canvas.sample.id)}.json"
            piece = annotation_page(grouped[canvas.id], url(rel), label if isinstance(label, dict) else None)
            problems = validate_presentation3(piece)
            if problems:
                raise BadInputError(f"its boxes do not make a valid AnnotationPage ({problems[0]})", path)
            write_annotation_page(out / rel, piece)
            box_pages += 1
            reference = {"id": url(rel), "type": "AnnotationPage"}
            if "label" in piece:
                reference["label"] = piece["label"]
            referenced[canvas.id].append(reference)

    items = []
    overlays = 0
    for canvas in progress(canvases, "exporting"):
        sample = canvas.sample
        key = safe_name(sample.id)
        image_path = Path(sample.path)
        if copy_images:
            rel = f"images/{key}{image_path.suffix.lower()}"
            with image_path.open("rb") as source:
                write_atomically(out / rel, lambda handle: shutil.copyfileobj(source, handle))
            image_id = url(rel)
        else:
            image_id = image_path.resolve().as_uri()
        paint_id = url(f"canvas/{key}/page")
        painting = {
            "id": paint_id, "type": "AnnotationPage",
            "items": [{
                "id": f"{paint_id}/image", "type": "Annotation", "motivation": "painting",
                "body": {"id": image_id, "type": "Image", "format": _media_type(image_path),
                         "width": canvas.image_size[0], "height": canvas.image_size[1]},
                "target": canvas.id,
            }],
        }
        annotations = list(referenced[canvas.id])
        width, height = canvas.image_size
        for method, store in stores.items():
            if not store.has(sample.id):
                continue
            raw, scores = store.read(sample.id)
            classes = store_classes[method]
            if all_classes:
                wanted = list(classes)
            else:
                wanted = [c for c in sample.labels if c in classes] or [classes[int(np.argmax(scores))]]
            heat = normalised_maps(raw[[classes.index(c) for c in wanted]], (height, width))
            layer_items = []
            for cls, values in zip(wanted, heat):
                rel = f"overlays/{method}/{key}_{safe_name(cls)}.png"
                write_png(out / rel, heatmap_layer(values, (width, height), max_alpha=max_alpha, colormap=colormap))
                overlays += 1
                layer_items.append({
                    "type": "Annotation", "motivation": "supplementing",
                    "label": _language_map(f"{method} saliency map of {cls} "
                                           f"(probability {float(scores[classes.index(cls)]):.3f})"),
                    "body": {"id": url(rel), "type": "Image", "format": "image/png", "width": width,
                             "height": height},
                    "target": canvas.id,
                })
            layer = annotation_page(layer_items, url(f"canvas/{key}/overlays/{method}"),
                                    label=f"{method} saliency maps")
            del layer["@context"]  # embedded in the manifest, whose context applies
            annotations.append(layer)
        entry: dict[str, Any] = {
            "id": canvas.id, "type": "Canvas", "label": {"none": [sample.id]},
            "width": canvas.width, "height": canvas.height, "items": [painting],
        }
        if annotations:
            entry["annotations"] = annotations
        items.append(entry)

    manifest = {
        "@context": CONTEXT,
        "id": url("manifest.json"),
        "type": "Manifest",
        "label": _language_map(f"iconolens run {rundir.root.resolve().name}"),
        "summary": _language_map("Paintings with boxes derived from saliency maps, detections and saliency maps "
                                 "as overlays, written by iconolens."),
        "items": items,
    }
    problems = validate_presentation3(manifest)
    if problems:
        raise BadInputError(f"the run does not make a valid IIIF manifest ({problems[0]})", rundir.dataset_json)
    path = write_json_atomically(out / "manifest.json", manifest)
    return ExportResult(path, len(canvases), box_pages, overlays, tuple(skipped))
