"""The viewer as a static site: page, script and style from the package, and the run's data as script files.

Browsers refuse ``fetch`` and canvas pixel reads for files opened from ``file://``, so every piece of data is
a script that hands its content to the page (``ICONOLENS.receive...``) and maps travel as ``data:`` PNGs,
which a canvas may read. Layout of ``OUT``::

    index.html, app.js, style.css       the page (copied from iconolens/viewer/assets)
    data/run.js                         the header: classes, methods, measures, notes, index chunk count
    data/index-NNN.js                   the gallery index, 1,000 images per file
    data/images/<key>.js                one image's maps, boxes and measures, loaded when it is opened
    thumbs/<key>.jpg, images/<key>.jpg  a thumbnail and a display copy of each painting

``<key>`` hashes the image's id and file state, so a rebuild reuses the pictures of unchanged images.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from iconolens.atomic import write_bytes_atomically, write_text_atomically
from iconolens.data.images import load_image
from iconolens.errors import IconolensError
from iconolens.progress import progress
from iconolens.viewer.content import ViewerHeader, ViewerImage
from iconolens.viewer.maps import maps_png, quantise_maps, working_size

ASSETS = Path(__file__).with_name("assets")
PAGE_FILES = ("index.html", "app.js", "style.css")
INDEX_CHUNK = 1000
DISPLAY_SIDE = 1024
THUMB_SIDE = 200


@dataclass(frozen=True)
class UnreadableImage:
    """An image that could not be shown, and why (listed on the gallery page)."""

    id: str
    reason: str


def _script(call: str, *args: Any) -> str:
    payload = ", ".join(json.dumps(a, separators=(",", ":"), ensure_ascii=False, allow_nan=False) for a in args)
    return f"ICONOLENS.{call}({payload});\n"


def image_key(image_id: str, path: Path) -> str:
    """A file-name-safe key that changes when the image file does."""
    try:
        stat = path.stat()
        state = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        state = "missing"
    return hashlib.sha1(f"{image_id}\0{path}\0{state}".encode("utf-8")).hexdigest()[:16]


def _jpeg(picture: Image.Image, side: int, quality: int) -> bytes:
    copy = picture.copy()
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    copy.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _finite(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


def _detail(image: ViewerImage) -> dict[str, Any]:
    maps = {}
    for method, mapset in image.maps.items():
        quantised = quantise_maps(mapset.raw)
        png = base64.b64encode(maps_png(quantised)).decode("ascii")
        maps[method] = {"src": f"data:image/png;base64,{png}", "w": int(quantised.shape[2]),
                        "h": int(quantised.shape[1]), "targets": list(mapset.targets),
                        "boxes": [list(b) for b in mapset.target_boxes]}
    return {
        "id": image.id,
        "maps": maps,
        "expert": [list(b) for b in image.expert_boxes],
        "stored": {name: [list(b) for b in rows] for name, rows in image.stored_boxes.items()},
        "targetMeasures": {t: {k: _finite(v) for k, v in m.items()} for t, m in image.target_measures.items()},
    }


def _entry(image: ViewerImage, key: str) -> dict[str, Any]:
    gw, gh = working_size(image.width, image.height)
    return {
        "k": key, "id": image.id, "s": image.split, "w": image.width, "h": image.height, "gw": gw, "gh": gh,
        "l": list(image.labels), "p": [_finite(round(float(p), 4)) for p in image.probabilities],
        "d": list(image.predicted), "o": sorted(image.outcome), "n": len(image.maps),
        "m": {k: _finite(v) for k, v in image.measures.items()},
    }


def _remove_stale(folder: Path, keep: set[str], suffix: str) -> None:
    if folder.is_dir():
        for path in folder.glob(f"*{suffix}"):
            if path.name[: -len(suffix)] not in keep:
                path.unlink()


def write_viewer(
    out_dir: str | Path,
    header: ViewerHeader | Any,
    images: Iterable[ViewerImage | UnreadableImage],
    total: int | None = None,
) -> Path:
    """Write the site for ``images`` into ``out_dir``; return its ``index.html``.

    ``header`` is a :class:`ViewerHeader` or a function returning one, called after the images were read
    (so notes found while reading them are included). Unreadable images are listed, not shown.
    """
    out = Path(out_dir)
    for name in PAGE_FILES:
        write_bytes_atomically(out / name, (ASSETS / name).read_bytes())
    entries: list[dict[str, Any]] = []
    unreadable: list[dict[str, str]] = []
    keys: set[str] = set()
    for image in progress(images, "writing the viewer", total=total):
        if isinstance(image, UnreadableImage):
            unreadable.append({"id": image.id, "reason": image.reason})
            continue
        key = image_key(image.id, image.path)
        thumb, display = out / "thumbs" / f"{key}.jpg", out / "images" / f"{key}.jpg"
        if not (thumb.is_file() and display.is_file()):
            try:
                picture = load_image(image.path)
            except IconolensError as exc:
                unreadable.append({"id": image.id, "reason": str(exc)})
                continue
            write_bytes_atomically(display, _jpeg(picture, DISPLAY_SIDE, 88))
            write_bytes_atomically(thumb, _jpeg(picture, THUMB_SIDE, 80))
        write_text_atomically(out / "data" / "images" / f"{key}.js", _script("receiveImage", key, _detail(image)))
        entries.append(_entry(image, key))
        keys.add(key)
    chunks = [entries[i:i + INDEX_CHUNK] for i in range(0, len(entries), INDEX_CHUNK)] or [[]]
    for k, chunk in enumerate(chunks):
        write_text_atomically(out / "data" / f"index-{k:03d}.js", _script("receiveIndex", k, chunk))
    for path in (out / "data").glob("index-*.js"):
        if int(path.stem.split("-")[1]) >= len(chunks):
            path.unlink()
    for folder, suffix in ((out / "thumbs", ".jpg"), (out / "images", ".jpg"), (out / "data" / "images", ".js")):
        _remove_stale(folder, keys, suffix)
    head = header() if callable(header) else header
    run = {
        "title": head.title, "kind": head.kind, "classes": list(head.classes), "methods": list(head.methods),
        "measures": [{"key": m.key, "title": m.title, "higherIsBetter": m.higher_is_better} for m in head.measures],
        "levels": list(head.levels), "notes": list(head.notes), "unreadable": unreadable,
        "chunks": len(chunks), "images": len(entries),
    }
    write_text_atomically(out / "data" / "run.js", _script("receiveRun", run))
    return out / "index.html"

