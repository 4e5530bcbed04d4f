"""Pascal VOC XML trees, including the People-Art layout.

Two layouts are read:

- **list layout** (People-Art, and VOC's per-class lists): files ``<class>_<split>.txt`` in
  ``Annotations/`` or ``ImageSets/Main/``, one line per image, ``<entry> 1|0|-1`` (present, present but
  only difficult, absent). ``<entry>`` is a path under ``JPEGImages/`` (``Style/file.jpg``) or a bare
  VOC id (``2008_000002``, image ``JPEGImages/<id>.jpg``). Its boxes are in ``Annotations/<entry>.xml``,
  which may exist only for images where the class is present.
- **XML layout**: every ``Annotations/**/*.xml``; splits from ``ImageSets/Main/{train,val,test}.txt``
  when present.

VOC boxes are 1-based and inclusive; they become half-open 0-based boxes: ``x0 = xmin - 1``,
``x1 = xmax`` (same for y), ``difficult`` kept.

Labels depend on the task:

- ``presence``: the classes present in the image. A binary task such as People-Art's person presence is
  a one-class multi-label dataset: labels ``("person",)`` or ``()``; ``multi_label`` is True, so a
  classifier scores the class with a sigmoid and an image without people is a plain negative.
- ``style``: the single label is the image's folder under ``JPEGImages/`` (People-Art's art style);
  boxes are kept, so the figures of every style can still be localised.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from iconolens.data.boxes import checked_boxes
from iconolens.data.folder import is_image_name
from iconolens.data.headers import read_headers
from iconolens.data.images import DEFAULT_MAX_PIXELS
from iconolens.data.records import Box, Dataset, Problem, Sample
from iconolens.errors import BadAnnotationError, BadInputError

Task = Literal["presence", "style"]
TASKS: tuple[str, ...] = ("presence", "style")
SPLITS = ("train", "val", "test")
_LIST_FOLDERS = ("Annotations", "ImageSets/Main")


@dataclass
class _Entry:
    """One image as the lists describe it, before its files are checked."""

    name: str
    split: str | None = None
    flags: dict[str, int] = field(default_factory=dict)


def is_voc_tree(root: Path) -> bool:
    """Whether ``root`` looks like a VOC tree (an ``Annotations`` folder beside ``JPEGImages``)."""
    return (root / "Annotations").is_dir() and (root / "JPEGImages").is_dir()


def _list_files(root: Path) -> list[tuple[str, str, Path]]:
    found = []
    for folder in _LIST_FOLDERS:
        directory = root / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*_*.txt")):
            cls, _, split = path.stem.rpartition("_")
            if cls and split in SPLITS:
                found.append((cls, split, path))
        if found:
            return found
    return found


def _read_lists(root: Path) -> tuple[list[str], dict[str, _Entry]]:
    classes: list[str] = []
    entries: dict[str, _Entry] = {}
    for cls, split, path in _list_files(root):
        if cls not in classes:
            classes.append(cls)
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("1", "0", "-1"):
                raise BadAnnotationError(
                    f"line {number} should read '<image> 1|0|-1', found {line.strip()!r}", path
                )
            name, flag = parts[0], int(parts[1])
            entry = entries.setdefault(name, _Entry(name=name, split=split))
            if entry.split != split:
                raise BadAnnotationError(
                    f"line {number}: image {name!r} is listed in both {entry.split} and {split}", path
                )
            if cls in entry.flags:
                raise BadAnnotationError(f"line {number}: image {name!r} is listed twice", path)
            entry.flags[cls] = flag
    return classes, entries


def _xml_entries(root: Path) -> dict[str, _Entry]:
    annotations = root / "Annotations"
    entries: dict[str, _Entry] = {}
    for xml in sorted(annotations.rglob("*.xml")):
        name = xml.relative_to(annotations).as_posix()[: -len(".xml")]
        entries[name] = _Entry(name=name)
    split_dir = root / "ImageSets" / "Main"
    for split in SPLITS:
        listing = split_dir / f"{split}.txt"
        if listing.is_file():
            for line in listing.read_text(encoding="utf-8", errors="replace").split():
                if line in entries:
                    entries[line].split = split
    return entries


def _image_path(root: Path, name: str, xml_file_name: str | None) -> Path:
    images = root / "JPEGImages"
    if is_image_name(Path(name)):
        return images / name
    if xml_file_name:
        return images / Path(name).parent / xml_file_name
    return images / f"{name}.jpg"


@dataclass(frozen=True)
class _Annotation:
    file_name: str | None
    size: tuple[int, int] | None
    boxes: list[Box]


def _number(obj: ET.Element, tag: str, xml: Path) -> float:
    text = obj.findtext(tag)
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadAnnotationError(f"<{tag}> is missing or not a number ({text!r})", xml) from None


def parse_voc_xml(xml: Path) -> _Annotation:
    """File name, declared size and boxes (converted to half-open 0-based) of one VOC XML file."""
    try:
        tree = ET.parse(xml)
    except ET.ParseError as exc:
        raise BadAnnotationError(f"malformed XML ({exc})", xml) from None
    except OSError as exc:
        raise BadAnnotationError(f"cannot read the XML file ({exc.strerror})", xml) from None
    top = tree.getroot()
    size = None
    width, height = top.findtext("size/width"), top.findtext("size/height")
    if width and height:
        try:
            size = (int(float(width)), int(float(height)))
        except ValueError:
            raise BadAnnotationError(f"<size> is not a number ({width!r} x {height!r})", xml) from None
        if size[0] <= 0 or size[1] <= 0:
            size = None
    boxes = []
    for obj in top.iter("object"):
        label = (obj.findtext("name") or "").strip()
        if not label:
            raise BadAnnotationError("an <object> has no <name>", xml)
        bndbox = obj.find("bndbox")
        if bndbox is None:
            continue
        xmin, ymin = _number(bndbox, "xmin", xml), _number(bndbox, "ymin", xml)
        xmax, ymax = _number(bndbox, "xmax", xml), _number(bndbox, "ymax", xml)
        difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "", "false")
        boxes.append(Box(xmin - 1.0, ymin - 1.0, xmax, ymax, label=label, difficult=difficult))
    return _Annotation(file_name=top.findtext("filename"), size=size, boxes=boxes)


def read_voc(
    root: str | Path,
    task: Task = "presence",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    decode: bool = False,
) -> Dataset:
    """A VOC or People-Art tree as a Dataset (see the module notes for layouts and tasks)."""
    root = Path(root)
    if task not in TASKS:
        raise BadInputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if not is_voc_tree(root):
        raise BadInputError("expected a VOC tree with Annotations/ and JPEGImages/ folders", root)
    list_classes, entries = _read_lists(root)
    if not entries:
        entries = _xml_entries(root)
    if not entries:
        raise BadInputError("the VOC tree lists no images (no split lists and no XML files)", root)

    problems: list[Problem] = []
    prepared: list[tuple[_Entry, Path, _Annotation | None]] = []
    for entry in entries.values():
        xml = root / "Annotations" / f"{entry.name}.xml"
        annotation = None
        if xml.is_file():
            try:
                annotation = parse_voc_xml(xml)
            except BadAnnotationError as exc:
                problems.append(Problem(str(xml), f"{exc.problem}; image skipped"))
                continue
        elif any(flag >= 0 for flag in entry.flags.values()):
            problems.append(Problem(str(xml), "annotation file of an image with objects is missing; image skipped"))
            continue
        file_name = annotation.file_name if annotation else None
        prepared.append((entry, _image_path(root, entry.name, file_name), annotation))

    headers = read_headers([p for _, p, _ in prepared], max_pixels=max_pixels, decode=decode)
    samples: list[Sample] = []
    for (entry, image_path, annotation), header in zip(prepared, headers):
        if isinstance(header, Problem):
            problems.append(header)
            continue
        boxes: tuple[Box, ...] = ()
        if annotation is not None:
            if annotation.size is not None and annotation.size != (header.width, header.height):
                problems.append(
                    Problem(
                        str(image_path),
                        f"its annotation gives the size as {annotation.size[0]}x{annotation.size[1]} "
                        f"but the image is {header.width}x{header.height}; image skipped",
                    )
                )
                continue
            boxes, box_problem = checked_boxes(annotation.boxes, header.width, header.height)
            if box_problem is not None:
                xml = root / "Annotations" / f"{entry.name}.xml"
                problems.append(Problem(str(xml), f"{box_problem}; image skipped"))
                continue
        if task == "style":
            parts = Path(entry.name).parts
            if len(parts) < 2:
                raise BadInputError(
                    f"the style task needs images in one folder per style; {entry.name!r} is in none", root
                )
            labels: tuple[str, ...] = (parts[0],)
        elif entry.flags:
            labels = tuple(c for c in list_classes if entry.flags.get(c, -1) >= 0)
        else:
            labels = tuple(sorted({b.label for b in boxes}))
        samples.append(
            Sample(
                id=entry.name,
                path=image_path.resolve(),
                labels=labels,
                boxes=boxes,
                width=header.width,
                height=header.height,
                split=entry.split,
            )
        )
    if task == "style":
        classes = tuple(sorted({s.labels[0] for s in samples}))
    elif list_classes:
        classes = tuple(list_classes)
    else:
        classes = tuple(sorted({c for s in samples for c in s.labels}))
    return Dataset(
        samples=tuple(samples),
        classes=classes,
        multi_label=task == "presence",
        root=root.resolve(),
        problems=tuple(problems),
    )
