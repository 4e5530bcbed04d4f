"""Publishing a collection as a static IIIF site: a Presentation 3 manifest and level-0 images.

Any plain web server (``python -m http.server``) can then serve it, so the IIIF reader can be exercised
end to end, offline, on a collection whose labels and boxes are known. The layout under ``out_dir``:

- ``manifest.json``: one canvas per sample, ``scale`` times the image's size (a viewer's canvas is rarely
  the size of the file it shows, so readers must scale), the labels in the metadata field ``Subject``
  (``;``-separated) and every box as a ``tagging`` annotation on ``canvas#xywh=`` in canvas coordinates;
- ``images/NNNNNN.<ext>``: the original file, the canvas's static image resource;
- ``iiif/NNNNNN/info.json`` and ``iiif/NNNNNN/full/max/0/default.jpg``: a level-0 Image API 3 service
  (when ``image_service``), which can only hand out the whole image.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from iconolens.atomic import write_atomically, write_bytes_atomically, write_json_atomically
from iconolens.data.images import load_image, probe_image
from iconolens.data.presentation3 import CONTEXT as PRESENTATION_3
from iconolens.data.records import Dataset, Sample
from iconolens.errors import BadInputError

IMAGE_3 = "http://iiif.io/api/image/3/context.json"
MANIFEST_NAME = "manifest.json"
SUBJECT_FIELD = "Subject"
JPEG_QUALITY = 95
_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".tif": "image/tiff",
                ".tiff": "image/tiff", ".gif": "image/gif", ".webp": "image/webp"}


def _size(sample: Sample) -> tuple[int, int]:
    if sample.width and sample.height:
        return sample.width, sample.height
    header = probe_image(sample.path, max_pixels=None)
    return header.width, header.height


def _copy(source: Path, target: Path) -> None:
    with source.open("rb") as handle:
        write_atomically(target, lambda out: shutil.copyfileobj(handle, out))


def _jpeg(path: Path) -> bytes:
    buffer = io.BytesIO()
    load_image(path, max_pixels=None).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _xywh(sample_box: tuple[float, float, float, float], scale: int) -> str:
    """A half-open pixel box as a canvas fragment (whole canvas units, as Media Fragments require)."""
    x0, y0, x1, y1 = (round(v * scale) for v in sample_box)
    return f"xywh={x0},{y0},{x1 - x0},{y1 - y0}"


def write_iiif_site(
    dataset: Dataset,
    out_dir: str | Path,
    base_url: str,
    scale: int = 2,
    image_service: bool = True,
) -> Path:
    """Write ``dataset`` as a static IIIF site to be served at ``base_url``; return the manifest's path.

    Images are written first and the manifest last, each atomically, so a manifest never refers to a
    missing image.
    """
    out_dir = Path(out_dir)
    if not base_url.lower().startswith(("http://", "https://")):
        raise BadInputError(f"the IIIF site's base URL must start with http:// or https://, not {base_url!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise BadInputError(f"the canvas scale must be a whole number of at least 1, not {scale!r}")
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInputError("the IIIF site folder is an existing file", out_dir)
    base = base_url.rstrip("/") + "/"

    canvases = []
    for n, sample in enumerate(dataset.samples, start=1):
        width, height = _size(sample)
        suffix = Path(sample.path).suffix.lower()
        name = f"{n:06d}{suffix}"
        _copy(Path(sample.path), out_dir / "images" / name)
        body: dict = {
            "id": f"{base}images/{name}", "type": "Image", "format": _MEDIA_TYPES.get(suffix, "image/jpeg"),
            "width": width, "height": height,
        }
        if image_service:
            service = f"{base}iiif/{n:06d}"
            write_bytes_atomically(out_dir / "iiif" / f"{n:06d}" / "full" / "max" / "0" / "default.jpg",
                                   _jpeg(Path(sample.path)))
            write_json_atomically(out_dir / "iiif" / f"{n:06d}" / "info.json", {
                "@context": IMAGE_3, "id": service, "type": "ImageService3", "protocol": "http://iiif.io/api/image",
                "profile": "level0", "width": width, "height": height,
                "sizes": [{"width": width, "height": height}],
            })
            body["service"] = [{"id": service, "type": "ImageService3", "profile": "level0"}]
        canvas_id = f"{base}canvas/{n}"
        canvas: dict = {
            "id": canvas_id, "type": "Canvas", "label": {"none": [sample.id]},
            "width": width * scale, "height": height * scale,
            "items": [{
                "id": f"{canvas_id}/page", "type": "AnnotationPage",
                "items": [{"id": f"{canvas_id}/page/image", "type": "Annotation", "motivation": "painting",
                           "body": body, "target": canvas_id}],
            }],
        }
        if sample.labels:
            canvas["metadata"] = [{"label": {"en": [SUBJECT_FIELD]}, "value": {"none": ["; ".join(sample.labels)]}}]
        if sample.boxes:
            canvas["annotations"] = [{
                "id": f"{canvas_id}/tags", "type": "AnnotationPage",
                "items": [
                    {"id": f"{canvas_id}/tags/{k}", "type": "Annotation", "motivation": "tagging",
                     "body": {"type": "TextualBody", "value": box.label, "format": "text/plain"},
                     "target": f"{canvas_id}#{_xywh(box.xyxy, scale)}"}
                    for k, box in enumerate(sample.boxes, start=1)
                ],
            }]
        canvases.append(canvas)

    manifest = {
        "@context": PRESENTATION_3, "id": f"{base}{MANIFEST_NAME}", "type": "Manifest",
        "label": {"none": [f"{len(canvases)} images written by iconolens"]},
        "items": canvases,
    }
    return write_json_atomically(out_dir / MANIFEST_NAME, manifest)
