"""Reading IIIF Presentation manifests and collections (2.1 and 3.0) as a collection of samples.

Museums publish paintings as IIIF manifests: one canvas per view, with an image (usually behind an Image
API service that can resize it), descriptive ``metadata`` and sometimes annotations drawn in a viewer.
Each canvas becomes one Sample: its id is the canvas id, its image a local copy fetched into the download
cache (``downloads``), its labels come from a metadata field or a CSV keyed by canvas id, and region
annotations (``tagging``, ``classifying``, ``commenting`` on ``canvas#xywh=...``) become boxes.

Canvas coordinates are not image pixels: a canvas may be 8000 px wide while the image fetched is 1024 px,
so boxes are divided by ``Sample.canvas_scale()`` on reading and the canvas is kept on the sample so
later outputs can go back to canvas coordinates.

A manifest that cannot be read at all (not JSON, no canvases, not IIIF, unknown version, 404, timeout)
is one error sentence naming its URL or file. A problem confined to one canvas (no image, an image that
fails to download or is over the pixel limit, a box outside the image) skips that canvas and is listed
in ``Dataset.problems``; so is a manifest of a collection that cannot be read.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from iconolens.data.boxes import checked_boxes
from iconolens.data.coco import parse_json_bytes, read_json_file
from iconolens.data.csv_labels import LABEL_SEPARATOR, labels_by_key
from iconolens.data.downloads import Downloader, DownloadError, DownloadSettings, default_cache_dir, is_url
from iconolens.data.headers import read_headers
from iconolens.data.images import DEFAULT_MAX_PIXELS
from iconolens.data.records import ATTRIBUTE_SEPARATOR, Box, Canvas, Dataset, Problem, Sample
from iconolens.errors import BadAnnotationError, BadInputError

#: Longest side of the image asked from an Image API service.
DEFAULT_SIZE = 1024
PRESENTATION_CONTEXT = "iiif.io/api/presentation/"
#: How much of a ``.json`` file is read to tell a IIIF document from COCO.
SNIFF_BYTES = 1 << 16
#: Annotation motivations whose text body names what the region shows.
TAG_MOTIVATIONS = frozenset({"tagging", "classifying", "commenting"})
_XYWH = re.compile(r"^(?:(pixel|percent):)?([^,]+),([^,]+),([^,]+),([^,]+)$")
_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class IIIFOptions:
    """How to read a manifest: image size, where labels come from, where images are cached, how to fetch.

    ``size`` is the longest side asked from an Image API service (None: the full image). Labels come from
    the metadata entry whose label is ``label_field`` (any language, case-insensitive), or from
    ``labels_csv`` (``canvas,labels``), else from the figure classes of the canvas's annotations.
    """

    size: int | None = DEFAULT_SIZE
    label_field: str | None = None
    labels_csv: Path | None = None
    cache_dir: Path | None = None
    download: DownloadSettings = field(default_factory=DownloadSettings)


def is_iiif_json(path: str | Path) -> bool:
    """Whether a ``.json`` file is a IIIF Presentation document (its ``@context`` near the start says so)."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    return PRESENTATION_CONTEXT.encode() in head and b"@context" in head


# --- small readers of IIIF values --------------------------------------------------------------------


def _strings(value: Any) -> list[str]:
    """A string or a list of strings (other items ignored) as a list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [x for x in value if isinstance(x, str)]
    return []


def _id(item: Any) -> str | None:
    """The ``id`` (3.0) or ``@id`` (2.1) of an object, or the string itself for a bare reference."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        value = item.get("id", item.get("@id"))
        return value if isinstance(value, str) and value else None
    return None


def _type(item: dict) -> str:
    """The ``type``/``@type`` without its ``sc:``/``oa:`` prefix."""
    value = item.get("type", item.get("@type"))
    value = value[0] if isinstance(value, list) and value else value
    return str(value).split(":")[-1] if isinstance(value, str) else ""


def _plain(text: str) -> str:
    """Text from a IIIF value, which may be simple HTML (it then starts with ``<`` and ends with ``>``)."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = html.unescape(_TAG.sub("", text))
    return text.strip()


def _language_map(value: Any) -> dict[str, list[str]]:
    """Texts by language from a 3.0 language map or a 2.1 value (string, ``@value`` object or list of them)."""
    if isinstance(value, str):
        return {"none": [value]}
    if isinstance(value, list):
        merged: dict[str, list[str]] = {}
        for item in value:
            for language, texts in _language_map(item).items():
                merged.setdefault(language, []).extend(texts)
        return merged
    if isinstance(value, dict):
        if "@value" in value:
            text = value["@value"]
            return {str(value.get("@language") or "none"): [text]} if isinstance(text, str) else {}
        return {str(k): _strings(v) for k, v in value.items() if _strings(v)}
    return {}


def _metadata_labels(metadata: Any, label_field: str) -> tuple[str, ...]:
    """The ``;``-separated values of every metadata entry labelled ``label_field`` (in the same language)."""
    wanted = label_field.strip().casefold()
    labels: list[str] = []
    for entry in _list(metadata):
        if not isinstance(entry, dict):
            continue
        names = _language_map(entry.get("label"))
        languages = [lang for lang, texts in names.items() if any(_plain(t).casefold() == wanted for t in texts)]
        if not languages:
            continue
        values = _language_map(entry.get("value"))
        chosen = next((values[lang] for lang in languages if lang in values), None)
        if chosen is None:
            chosen = values.get("none") or next(iter(values.values()), [])
        for text in chosen:
            labels.extend(x.strip() for x in _plain(text).split(LABEL_SEPARATOR))
    return tuple(dict.fromkeys(x for x in labels if x))


def _list(value: Any) -> list:
    """``value`` if it is a list, else an empty one (a malformed optional field reads as absent)."""
    return value if isinstance(value, list) else []


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or value != int(value):
        return None
    return int(value)


# --- images ------------------------------------------------------------------------------------------


def _image_api(service: dict) -> tuple[int, bool] | None:
    """(Image API version, level 0) of an image service, or None for another kind of service."""
    kind = _type(service)
    profile = service.get("profile")
    profiles = _strings(profile) + ([str(p.get("@id", "")) for p in profile if isinstance(p, dict)]
                                    if isinstance(profile, list) else [])
    hints = " ".join(_strings(service.get("@context")) + profiles + [kind])
    level0 = any(p.rstrip("/").removesuffix(".json").endswith("level0") for p in profiles)
    for version in (3, 2, 1):
        if kind == f"ImageService{version}" or f"iiif.io/api/image/{version}" in hints:
            return version, level0
    if "iiif.io/api/image" in hints or kind.startswith("ImageService"):
        return 2, level0
    return None


def _image_urls(resource: dict, size: int | None) -> tuple[str, ...]:
    """URLs to try for a painted image, best first: the sized Image API request, the full image, the file."""
    urls: list[str] = []
    services = resource.get("service", resource.get("services"))
    for service in services if isinstance(services, list) else [services]:
        if not isinstance(service, dict) or _id(service) is None:
            continue
        api = _image_api(service)
        if api is None:
            continue
        version, level0 = api
        base = _id(service).rstrip("/")  # type: ignore[union-attr]
        quality = "native" if version == 1 else "default"
        if size is not None and not level0:
            urls.append(f"{base}/full/!{size},{size}/0/{quality}.jpg")
        urls.append(f"{base}/full/{'max' if version == 3 else 'full'}/0/{quality}.jpg")
        break
    static = _id(resource)
    if static is not None and is_url(static):
        urls.append(static)
    return tuple(dict.fromkeys(urls))


def _painted_resource_v3(canvas: dict) -> dict | None:
    for page in _list(canvas.get("items")):
        for annotation in _list(page.get("items")) if isinstance(page, dict) else []:
            if not isinstance(annotation, dict) or "painting" not in _strings(annotation.get("motivation")):
                continue
            bodies = annotation.get("body")
            for body in bodies if isinstance(bodies, list) else [bodies]:
                if isinstance(body, dict) and _type(body) == "Choice":
                    body = next(iter(_list(body.get("items"))), None)
                if isinstance(body, dict) and _type(body) in ("Image", ""):
                    return body
    return None


def _painted_resource_v2(canvas: dict) -> dict | None:
    for annotation in _list(canvas.get("images")):
        resource = annotation.get("resource") if isinstance(annotation, dict) else None
        if isinstance(resource, dict) and _type(resource) == "Choice":
            resource = resource.get("default")
        if isinstance(resource, dict):
            return resource
    return None


# --- annotations -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Region:
    """A labelled rectangle in canvas coordinates, half-open like every box."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str


def _fragment(target: Any, canvas_id: str) -> tuple[bool, str | None]:
    """(whether ``target`` is this canvas, its ``xywh=`` fragment value or None for the whole canvas)."""
    if isinstance(target, list):
        for item in target:
            on_canvas, fragment = _fragment(item, canvas_id)
            if on_canvas:
                return on_canvas, fragment
        return False, None
    if isinstance(target, str):
        source, _, fragment = target.partition("#")
        if source != canvas_id:
            return False, None
        for part in fragment.split("&"):
            if part.startswith("xywh="):
                return True, part[len("xywh="):]
        return True, None
    if not isinstance(target, dict):
        return False, None
    if _type(target) != "SpecificResource":
        return _fragment(_id(target), canvas_id)
    source = _id(target.get("source", target.get("full")))
    if source is None or source.partition("#")[0] != canvas_id:
        return False, None
    selectors = target.get("selector")
    for selector in selectors if isinstance(selectors, list) else [selectors]:
        if isinstance(selector, dict) and _type(selector) == "Choice":
            selector = selector.get("default")
        if isinstance(selector, dict) and _type(selector) == "FragmentSelector":
            value = selector.get("value")
            if isinstance(value, str) and value.startswith("xywh="):
                return True, value[len("xywh="):]
    return _fragment(source, canvas_id)


def _body_text(body: Any) -> str | None:
    """The label text of a 3.0 ``TextualBody`` (``value``) or a 2.1 text resource (``chars``).

    With several text bodies, the first whose ``purpose`` is tagging, classifying or identifying wins (a
    score or a description beside the label is not the label), else the first.
    """
    texts: list[tuple[bool, str]] = []
    for item in body if isinstance(body, list) else [body]:
        if isinstance(item, dict) and _type(item) == "Choice":
            item = next(iter(_list(item.get("items"))), None)
        if not isinstance(item, dict):
            continue
        text = item.get("value", item.get("chars", item.get("@value")))
        if isinstance(text, str) and _plain(text):
            purposes = {p.split(":")[-1] for p in _strings(item.get("purpose"))}
            texts.append((bool(purposes & {"tagging", "classifying", "identifying"}), _plain(text)))
    return next((t for tagged, t in texts if tagged), texts[0][1] if texts else None)


def _numbers(texts: tuple[str, ...]) -> list[float] | None:
    try:
        return [float(t) for t in texts]
    except ValueError:
        return None


def _region(annotation: dict, canvas: Canvas) -> _Region | str | None:
    """The labelled region an annotation draws on ``canvas``; a string says why it cannot be read.

    None for an annotation that is not a region label: another motivation, another canvas, the whole
    canvas, or no text body.
    """
    motivations = {m.split(":")[-1] for m in _strings(annotation.get("motivation"))}
    if not motivations & TAG_MOTIVATIONS:
        return None
    on_canvas, fragment = _fragment(annotation.get("target", annotation.get("on")), canvas.id)
    label = _body_text(annotation.get("body", annotation.get("resource")))
    if not on_canvas or fragment is None or label is None:
        return None
    match = _XYWH.match(fragment.replace(" ", ""))
    values = _numbers(match.groups()[1:]) if match else None
    if match is None or values is None:
        return f"annotation {_id(annotation) or label!r} has an unreadable region 'xywh={fragment}'"
    x, y, w, h = values
    if match.group(1) == "percent":
        x, w = x * canvas.width / 100, w * canvas.width / 100
        y, h = y * canvas.height / 100, h * canvas.height / 100
    return _Region(x, y, x + w, y + h, label)


def _annotations_in(document: Any) -> list[dict]:
    """The annotations of an AnnotationPage (3.0 ``items``) or an AnnotationList (2.1 ``resources``)."""
    if not isinstance(document, dict):
        return []
    items = document.get("items", document.get("resources"))
    return [a for a in items if isinstance(a, dict)] if isinstance(items, list) else []


# --- manifests and collections ----------------------------------------------------------------------


@dataclass
class _Draft:
    """A canvas as the manifest describes it, before its image is fetched."""

    canvas: Canvas
    where: str
    images: tuple[str, ...] = ()
    metadata: Any = None
    annotations: list[dict] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    regions: list[_Region] = field(default_factory=list)
    problem: str | None = None


def _load_document(source: str, downloader: Downloader, what: str) -> Any:
    if not is_url(source):
        return read_json_file(Path(source), what)
    return parse_json_bytes(downloader.read(source), what, source)


def _version_and_kind(document: Any, where: str) -> tuple[int, str]:
    """(Presentation version 2 or 3, ``Manifest`` or ``Collection``), or one sentence saying why not."""
    if not isinstance(document, dict):
        raise BadAnnotationError("a IIIF manifest must hold a JSON object", where)
    contexts = _strings(document.get("@context"))
    versions = {c.split(PRESENTATION_CONTEXT, 1)[1][:1] for c in contexts if PRESENTATION_CONTEXT in c}
    if not versions:
        raise BadAnnotationError(
            f"not a IIIF Presentation manifest or collection (its @context {document.get('@context')!r} "
            "names no iiif.io/api/presentation context)", where,
        )
    if "3" in versions:
        version = 3
    elif "2" in versions:
        version = 2
    else:
        raise BadAnnotationError(
            f"IIIF Presentation version {min(versions)} is not supported (only 2.1 and 3.0)", where
        )
    kind = _type(document)
    if kind not in ("Manifest", "Collection"):
        raise BadAnnotationError(
            f"IIIF document of type {kind or 'none'!r} is neither a Manifest nor a Collection", where
        )
    return version, kind


def _members(collection: dict, version: int) -> list[tuple[str, dict | str]]:
    """(``Manifest``/``Collection``, the member object or reference) of a collection, in order."""
    if version == 3:
        entries = [(m, _type(m) if isinstance(m, dict) else "Manifest") for m in _list(collection.get("items"))]
    else:
        entries = [(m, "Manifest") for m in _list(collection.get("manifests"))]
        entries += [(m, "Collection") for m in _list(collection.get("collections"))]
        entries += [(m, _type(m)) for m in _list(collection.get("members")) if isinstance(m, dict)]
    return [(kind, member) for member, kind in entries if kind in ("Manifest", "Collection")]


def _is_embedded(member: Any, kind: str, version: int) -> bool:
    if not isinstance(member, dict):
        return False
    if kind == "Manifest":
        return "sequences" in member if version == 2 else "items" in member
    return any(key in member for key in ("manifests", "collections", "members", "items"))


def _resolve(reference: str, base: str) -> str:
    """A member's address: an absolute URL as is, else relative to the collection's URL or file."""
    if is_url(reference) or not reference:
        return reference
    if is_url(base):
        return urljoin(base, reference)
    return str(Path(base).parent / reference)


def _manifests(source: str, downloader: Downloader, problems: list[Problem]) -> list[tuple[dict, int, str]]:
    """Every manifest ``source`` is or lists (collections walked in order): (manifest, version, where)."""
    top = _load_document(source, downloader, "IIIF manifest")
    version, kind = _version_and_kind(top, source)
    if kind == "Manifest":
        return [(top, version, source)]
    found: list[tuple[dict, int, str]] = []
    seen = {source}

    def walk(collection: dict, version: int, where: str) -> None:
        for kind, member in _members(collection, version):
            if _is_embedded(member, kind, version):
                document, member_version, member_where = member, version, where
            else:
                address = _resolve(_id(member) or "", where)
                if not address or address in seen:
                    continue
                seen.add(address)
                try:
                    document = _load_document(address, downloader, "IIIF manifest")
                    member_version, kind = _version_and_kind(document, address)
                except BadInputError as exc:
                    problems.append(Problem(address, f"{exc.problem} (listed in {where}); its canvases are skipped"))
                    continue
                member_where = address
            if kind == "Manifest":
                found.append((document, member_version, member_where))  # type: ignore[arg-type]
            else:
                walk(document, member_version, member_where)  # type: ignore[arg-type]

    walk(top, version, source)
    if not found and not problems:
        raise BadAnnotationError("IIIF collection lists no manifests", source)
    return found


def _canvas_list(manifest: dict, version: int, where: str) -> list[dict]:
    if version == 3:
        items = manifest.get("items")
        if not isinstance(items, list):
            raise BadAnnotationError("IIIF manifest has no 'items' list of canvases", where)
    else:
        sequences = manifest.get("sequences")
        if not isinstance(sequences, list) or not sequences or not isinstance(sequences[0], dict):
            raise BadAnnotationError("IIIF 2 manifest has no 'sequences' list", where)
        items = sequences[0].get("canvases")
        if not isinstance(items, list):
            raise BadAnnotationError("the first sequence of the IIIF 2 manifest has no 'canvases' list", where)
    for index, canvas in enumerate(items):
        if not isinstance(canvas, dict) or _type(canvas) != "Canvas":
            raise BadAnnotationError(f"item #{index + 1} of the manifest is not a Canvas object", where)
        if _id(canvas) is None:
            raise BadAnnotationError(f"canvas #{index + 1} has no id", where)
    return items


def _drafts(manifest: dict, version: int, where: str, size: int | None) -> list[_Draft]:
    """One draft per canvas of a manifest; a canvas that cannot be used carries its problem."""
    manifest_id = _id(manifest) or where
    drafts = []
    for item in _canvas_list(manifest, version, where):
        canvas_id = str(_id(item))
        width, height = _positive_int(item.get("width")), _positive_int(item.get("height"))
        draft = _Draft(Canvas(canvas_id, width or 0, height or 0, manifest_id), where, metadata=item.get("metadata"))
        drafts.append(draft)
        if width is None or height is None:
            draft.problem = f"canvas has no valid width and height in {where}; skipped"
            continue
        resource = _painted_resource_v3(item) if version == 3 else _painted_resource_v2(item)
        draft.images = _image_urls(resource, size) if resource is not None else ()
        if not draft.images:
            draft.problem = f"canvas has no image (no Image API service and no image URL) in {where}; skipped"
            continue
        pages = item.get("annotations") if version == 3 else item.get("otherContent")
        for page in _list(pages):
            if isinstance(page, dict) and ("items" in page or "resources" in page):
                draft.annotations.extend(_annotations_in(page))
            elif _id(page) is not None:
                draft.references.append(_resolve(_id(page), where))  # type: ignore[arg-type]
    return drafts


def _read_regions(drafts: list[_Draft], downloader: Downloader) -> None:
    """Fetch referenced annotation pages and turn every draft's annotations into regions (or a problem)."""
    wanted = list(dict.fromkeys(url for d in drafts for url in d.references))
    documents: dict[str, Any] = {}
    failures: dict[str, str] = {}
    local = [url for url in wanted if not is_url(url)]
    remote = [url for url in wanted if is_url(url)]
    for url, result in zip(remote, downloader.read_all(remote)):
        if isinstance(result, DownloadError):
            failures[url] = result.problem
            continue
        try:
            documents[url] = json.loads(result.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            failures[url] = "not JSON"
    for url in local:
        try:
            documents[url] = read_json_file(Path(url), "annotation page")
        except BadInputError as exc:
            failures[url] = exc.problem
    for draft in drafts:
        failed = next((url for url in draft.references if url in failures), None)
        if failed is not None:
            draft.problem = f"its annotations at {failed} cannot be read ({failures[failed]}); canvas skipped"
            continue
        annotations = draft.annotations + [a for url in draft.references for a in _annotations_in(documents[url])]
        for annotation in annotations:
            region = _region(annotation, draft.canvas)
            if isinstance(region, str):
                draft.problem = f"{region} in {draft.where}; canvas skipped"
                break
            if region is not None:
                draft.regions.append(region)


def _boxes(regions: list[_Region], canvas: Canvas, width: int, height: int) -> list[Box]:
    """Regions in canvas coordinates as boxes in the pixels of the ``width`` x ``height`` image."""
    sx, sy = canvas.width / width, canvas.height / height
    return [
        Box(r.x0 / sx, r.y0 / sy, r.x1 / sx, r.y1 / sy, label=r.label,
            level="attribute" if ATTRIBUTE_SEPARATOR in r.label else "figure")
        for r in regions
    ]


def read_iiif(
    source: str | Path,
    options: IIIFOptions = IIIFOptions(),
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    decode: bool = False,
) -> Dataset:
    """The collection a IIIF manifest or collection (a URL or a local file) describes, images cached locally.

    Canvases that cannot be used are listed in ``problems`` (see the module notes).
    """
    source = str(source)
    if options.label_field is not None and options.labels_csv is not None:
        raise BadInputError("give either a label field or a labels CSV for a IIIF manifest, not both")
    if options.size is not None and options.size < 1:
        raise BadInputError(f"the IIIF image size must be a positive number of pixels, not {options.size!r}")
    table = None if options.labels_csv is None else labels_by_key(options.labels_csv, "canvas")
    downloader = Downloader(options.cache_dir or default_cache_dir(), options.download)
    problems: list[Problem] = []

    drafts: list[_Draft] = []
    seen: dict[str, str] = {}
    for manifest, version, where in _manifests(source, downloader, problems):
        for draft in _drafts(manifest, version, where, options.size):
            if draft.canvas.id in seen:
                problems.append(Problem(draft.canvas.id, f"canvas is listed again in {where} (first in "
                                        f"{seen[draft.canvas.id]}); the first is kept"))
                continue
            seen[draft.canvas.id] = where
            drafts.append(draft)
    if table is not None:
        if drafts and not any(d.canvas.id in table for d in drafts):
            raise BadAnnotationError(f"none of its canvas ids is a canvas of {source}", options.labels_csv)
        for draft in drafts:
            if draft.problem is None and draft.canvas.id not in table:
                draft.problem = f"canvas is not listed in the labels CSV {options.labels_csv}; skipped"

    _read_regions([d for d in drafts if d.problem is None], downloader)
    for draft in drafts:
        if draft.problem is not None:
            problems.append(Problem(draft.canvas.id, draft.problem))
    ready = [d for d in drafts if d.problem is None]

    fetched: list[tuple[_Draft, Path]] = []
    for draft, result in zip(ready, downloader.fetch_all([d.images for d in ready], "Downloading IIIF images")):
        if isinstance(result, DownloadError):
            problems.append(Problem(result.url, f"{result.problem}; canvas {draft.canvas.id} skipped"))
        else:
            fetched.append((draft, result))

    samples: list[Sample] = []
    headers = read_headers([path for _, path in fetched], max_pixels=max_pixels, decode=decode)
    for (draft, path), header in zip(fetched, headers):
        canvas = draft.canvas
        if isinstance(header, Problem):
            problems.append(Problem(canvas.id, f"{header.message} (its image, cached at {path}); canvas skipped"))
            continue
        boxes, box_problem = checked_boxes(_boxes(draft.regions, canvas, header.width, header.height),
                                           header.width, header.height)
        if box_problem is not None:
            problems.append(Problem(canvas.id, f"{box_problem} (annotation of {draft.where} scaled from the "
                                    f"{canvas.width}x{canvas.height} canvas); canvas skipped"))
            continue
        if table is not None:
            labels = table[canvas.id]
        elif options.label_field is not None:
            labels = _metadata_labels(draft.metadata, options.label_field)
        else:
            labels = tuple(dict.fromkeys(b.figure_class for b in boxes))
        samples.append(Sample(id=canvas.id, path=path.resolve(), labels=labels, boxes=boxes,
                              width=header.width, height=header.height, canvas=canvas))

    classes = tuple(sorted({label for s in samples for label in s.labels}))
    return Dataset(
        samples=tuple(samples), classes=classes, multi_label=any(len(s.labels) != 1 for s in samples),
        root=downloader.cache_dir.resolve(), problems=tuple(problems),
    )
