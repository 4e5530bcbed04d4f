"""Maps over test paintings, by class and method: the picture a reader checks the tables against.

Rows are a few test images of each class, columns the saliency methods stored in the run. Each cell is the
method's map for the row's class over the painting, with the class's expert boxes in red and the boxes derived
from that method's maps in green (the pseudo ground truth ``iconolens boxes`` wrote, else its detections), so
a box on the wrong symbol is seen, not only counted. Cells are 256 px by default because attributes are small.

One set of sheets is drawn per box level the run has (expert or derived boxes), since figure and attribute
boxes of one class would hide each other; a run without any box gets maps only. Sheets hold a few classes
each so no picture becomes too tall to open.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from iconolens.data.coco import read_json_file
from iconolens.data.images import load_image
from iconolens.data.records import ATTRIBUTE_SEPARATOR, Box, Dataset, Sample
from iconolens.errors import BadAnnotationError, IconolensError
from iconolens.explain.store import MapStore
from iconolens.report.method_gallery import SPLIT_ORDER, map_tile, stored_methods
from iconolens.report.overlays import write_png
from iconolens.report.sections import error_sentence
from iconolens.run import RunDirectory

LEVELS = ("figure", "attribute")
GRID_FOLDER = "class_grid"
HEADER_HEIGHT = 30
LABEL_WIDTH = 170
GAP = 4
CLASSES_PER_SHEET = 5
MAX_CLASSES = 20
BACKGROUND = (255, 255, 255)
EMPTY_CELL = (235, 235, 235)

DerivedByPair = dict[tuple[str, str], list[Box]]  # (sample id, class) -> boxes


@dataclass(frozen=True)
class GridSheet:
    """One picture of the grid and what it shows, for its caption."""

    path: Path
    level: str | None
    methods: tuple[str, ...]
    rows: tuple[tuple[str, str], ...]  # (class, sample id), top to bottom
    derived_files: dict[str, Path]  # method -> box file its green boxes come from


@dataclass
class ClassGrid:
    """The sheets written, the sentences about files that were skipped, and how many classes were left out."""

    sheets: list[GridSheet] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    omitted_classes: int = 0


def fitted_size(width: int, height: int, side: int) -> tuple[int, int]:
    """``(width, height)`` scaled so the longer side is ``side``: small paintings are enlarged too, so their
    attributes can be seen."""
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def cell_origin(row: int, column: int, side: int) -> tuple[int, int]:
    """Top-left pixel of the cell of ``row`` and method ``column`` (both from 0) on a sheet."""
    return LABEL_WIDTH + column * (side + GAP), HEADER_HEIGHT + row * (side + GAP)


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont:
    """matplotlib's DejaVu Sans at ``size`` px (readable labels), else PIL's built-in font."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=True), size)
    except (OSError, ValueError, ImportError):
        return ImageFont.load_default()


def derived_boxes_file(run: RunDirectory, method: str, level: str) -> Path | None:
    """The box file of ``method`` at ``level`` in RUN/boxes/: the pseudo ground truth, else the detections."""
    for kind in ("pseudo_coco", "detections"):
        path = run.boxes_dir / f"{method}_{level}_{kind}.json"
        if path.is_file():
            return path
    return None


def _class_of(name: str) -> str:
    """The class a derived box's label belongs to: ``"region - Peter"`` to ``"Peter"``."""
    return name.split(ATTRIBUTE_SEPARATOR, 1)[1] if ATTRIBUTE_SEPARATOR in name else name


def read_derived_boxes(path: Path, classes: Sequence[str], level: str) -> DerivedByPair:
    """Boxes of a pseudo-ground-truth COCO file or a COCO detections list, by (sample id, class).

    Only the few boxes of the drawn images are needed, so the file is read as JSON without probing images.
    """
    data = read_json_file(path, "box file")
    out: DerivedByPair = {}
    try:
        if isinstance(data, dict):
            names = {c["id"]: _class_of(str(c["name"])) for c in data["categories"]}
            ids = {im["id"]: str(im.get("sample_id") or im["file_name"]) for im in data["images"]}
            items = [(ids[a["image_id"]], names[a["category_id"]], a["bbox"]) for a in data.get("annotations", [])]
        elif isinstance(data, list):
            items = [(str(d["sample_id"]), classes[int(d["category_id"]) - 1], d["bbox"]) for d in data]
        else:
            raise TypeError("neither a COCO collection nor a list of detections")
        for sample_id, cls, bbox in items:
            x, y, w, h = (float(v) for v in bbox)
            out.setdefault((sample_id, cls), []).append(Box(x, y, x + w, y + h, label=cls, level=level))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BadAnnotationError(f"box file is damaged ({type(exc).__name__}: {exc})", path) from None
    return out


def _samples_by_class(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    """Each class's images: those labelled with it or holding one of its boxes."""
    out: dict[str, list[Sample]] = {}
    for sample in samples:
        for cls in dict.fromkeys([*sample.labels, *(b.figure_class for b in sample.boxes)]):
            out.setdefault(cls, []).append(sample)
    return out


def _rows_for_class(candidates: Sequence[Sample], cls: str, level: str | None, stores: dict[str, MapStore],
                    per_class: int) -> list[Sample]:
    """Up to ``per_class`` images of ``cls`` with a map in some method: test split first, then images with
    expert boxes of the class at ``level``, then by id."""
    rank = {split: i for i, split in enumerate(SPLIT_ORDER)}
    ordered = sorted(candidates, key=lambda s: (rank.get(s.split or "", len(rank)),
                                                0 if level and s.boxes_of(cls, level) else 1, s.id))
    chosen = []
    for sample in ordered:
        if any(store.has(sample.id) for store in stores.values()):
            chosen.append(sample)
            if len(chosen) == per_class:
                break
    return chosen


def _scaled(boxes: Iterable[Box], sx: float, sy: float) -> list[Box]:
    return [Box(b.x0 * sx, b.y0 * sy, b.x1 * sx, b.y1 * sy, label=b.label, level=b.level) for b in boxes]


def _wrapped(draw: ImageDraw.ImageDraw, text: str, font, width: int, lines: int) -> list[str]:
    """``text`` cut into at most ``lines`` lines that fit ``width`` pixels (the last one ends with … if cut)."""
    out, current = [], ""
    for char in text:
        if draw.textlength(current + char, font=font) > width:
            out.append(current)
            current = ""
        current += char
    out.append(current)
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][:-1] + "…"
    return out


def _centred_text(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], text: str, font) -> None:
    x0, y0, x1, y1 = box
    lines = _wrapped(draw, text, font, x1 - x0 - 8, 2)
    for i, line in enumerate(lines):
        width = draw.textlength(line, font=font)
        draw.text((x0 + (x1 - x0 - width) / 2, y0 + (y1 - y0) / 2 - 9 * len(lines) + 18 * i), line,
                  fill="black", font=font)


def _draw_sheet(run: RunDirectory, path: Path, rows: list[tuple[str, Sample]], level: str | None, methods: list[str],
                stores: dict[str, MapStore], classes_of: dict[str, list[str]], derived: dict[str, DerivedByPair],
                side: int, notes: list[str]) -> None:
    width = LABEL_WIDTH + len(methods) * (side + GAP)
    height = HEADER_HEIGHT + len(rows) * (side + GAP)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    bold, small = _font(15), _font(12)
    draw.text((6, 8), "class, image", fill="black", font=small)
    for column, method in enumerate(methods):
        x, _ = cell_origin(0, column, side)
        text_width = draw.textlength(method, font=bold)
        draw.text((x + (side - text_width) / 2, 6), method, fill="black", font=bold)
    pictures: dict[str, Image.Image | None] = {}
    for row, (cls, sample) in enumerate(rows):
        _, top = cell_origin(row, 0, side)
        if sample.id not in pictures:
            try:
                pictures[sample.id] = load_image(sample.path).convert("RGB")
            except IconolensError as exc:
                pictures[sample.id] = None
                notes.append(f"image {sample.id!r} could not be read ({error_sentence(run, exc)}); its row is empty")
        picture = pictures[sample.id]
        probability = None
        label_lines = _wrapped(draw, cls, bold, LABEL_WIDTH - 12, 3)
        y = top + 4
        for line in label_lines:
            draw.text((6, y), line, fill="black", font=bold)
            y += 19
        for line in _wrapped(draw, sample.id, small, LABEL_WIDTH - 12, 3):
            draw.text((6, y), line, fill=(70, 70, 70), font=small)
            y += 15
        if sample.split:
            draw.text((6, y), f"{sample.split} split", fill=(70, 70, 70), font=small)
            y += 15
        if picture is not None:
            size = fitted_size(*picture.size, side)
            sx, sy = size[0] / picture.width, size[1] / picture.height
            shown = picture if size == picture.size else picture.resize(size, Image.BICUBIC)
            truth = _scaled(sample.boxes_of(cls, level), sx, sy) if level else []
        for column, method in enumerate(methods):
            x, _ = cell_origin(row, column, side)
            store = stores[method]
            reason = None
            if picture is None:
                reason = "image unreadable"
            elif cls not in classes_of[method]:
                reason = "class not in maps"
            elif not store.has(sample.id):
                reason = "no map"
            if reason is None:
                try:
                    maps, scores = store.read(sample.id)
                except IconolensError as exc:
                    notes.append(f"{error_sentence(run, exc)}; its cell is empty")
                    reason = "map damaged"
            if reason is not None:
                draw.rectangle((x, top, x + side - 1, top + side - 1), fill=EMPTY_CELL)
                _centred_text(draw, (x, top, x + side, top + side), reason, small)
                continue
            k = classes_of[method].index(cls)
            if probability is None and k < len(scores):
                probability = float(scores[k])
            green = _scaled(derived.get(method, {}).get((sample.id, cls), []), sx, sy)
            sheet.paste(map_tile(shown, maps[k], side, truth_boxes=truth, derived_boxes=green), (x, top))
        if probability is not None:
            draw.text((6, y), f"model's probability {probability:.2f}", fill=(70, 70, 70), font=small)
    write_png(path, sheet)


def write_class_grids(run: RunDirectory, dataset: Dataset, per_class: int = 2, side: int = 256) -> ClassGrid:
    """Write the grid sheets into ``RUN/report/class_grid/`` (earlier sheets there are removed first)."""
    grid = ClassGrid()
    folder = run.report_dir / GRID_FOLDER
    if folder.is_dir():
        for old in folder.glob("*.png"):
            old.unlink()
    stores, classes_of = {}, {}
    for method in stored_methods(run):
        store = MapStore(run.maps_dir(method))
        try:
            classes_of[method] = store.classes
        except (IconolensError, KeyError, TypeError) as exc:
            grid.notes.append(f"{method} is left out: {error_sentence(run, exc)}")
            continue
        stores[method] = store
    methods = list(stores)
    if not methods:
        return grid
    expert_levels = {b.level for s in dataset.samples for b in s.boxes}
    files = {level: {m: p for m in methods if (p := derived_boxes_file(run, m, level)) is not None}
             for level in LEVELS}
    levels: list[str | None] = [lv for lv in LEVELS if lv in expert_levels or files[lv]] or [None]
    classes = list(dataset.classes) + sorted({c for m in methods for c in classes_of[m]} - set(dataset.classes))
    index = _samples_by_class(dataset.samples)
    for level in levels:
        derived: dict[str, DerivedByPair] = {}
        used: dict[str, Path] = {}
        for method, path in (files[level] if level else {}).items():
            try:
                derived[method] = read_derived_boxes(path, dataset.classes, level)
                used[method] = path
            except IconolensError as exc:
                grid.notes.append(f"green boxes of {method} are left out: {error_sentence(run, exc)}")
        by_class = []
        for i, cls in enumerate(classes):
            if len(by_class) == MAX_CLASSES:
                grid.omitted_classes = sum(1 for c in classes[i:] if index.get(c))
                break
            chosen = _rows_for_class(index.get(cls, []), cls, level, stores, per_class)
            if chosen:
                by_class.append((cls, chosen))
        for k in range(0, len(by_class), CLASSES_PER_SHEET):
            rows = [(cls, s) for cls, chosen in by_class[k:k + CLASSES_PER_SHEET] for s in chosen]
            name = f"{level or 'maps'}_{k // CLASSES_PER_SHEET + 1}.png"
            path = folder / name
            _draw_sheet(run, path, rows, level, methods, stores, classes_of, derived, side, grid.notes)
            grid.sheets.append(GridSheet(path, level, tuple(methods), tuple((c, s.id) for c, s in rows), used))
    return grid
