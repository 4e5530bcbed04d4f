"""Reading a folder per class: ``ROOT/<class>/<image>``, one label per image (the folder's name)."""

from __future__ import annotations

from pathlib import Path

from iconolens.data.headers import read_headers
from iconolens.data.images import DEFAULT_MAX_PIXELS
from iconolens.data.records import Dataset, Problem, Sample
from iconolens.errors import BadInputError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm"}
)


def is_image_name(path: Path) -> bool:
    """Whether the file name says it is an image (the contents are checked separately)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def read_folder(
    root: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, decode: bool = False
) -> Dataset:
    """A single-label collection from the sub-folders of ``root``; unusable files are listed in ``problems``.

    Classes are the sorted names of the sub-folders holding at least one usable image; sample ids are
    the images' paths relative to ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise BadInputError("expected a folder with one sub-folder per class", root)
    problems: list[Problem] = []
    candidates: list[tuple[str, Path]] = []
    for entry in sorted(filter(_visible, root.iterdir())):
        if entry.is_file():
            problems.append(Problem(str(entry), "file lies outside any class folder; skipped"))
            continue
        for path in sorted(entry.rglob("*")):
            if not path.is_file() or not all(_visible(Path(part)) for part in path.relative_to(root).parts):
                continue
            if is_image_name(path):
                candidates.append((entry.name, path))
            else:
                problems.append(Problem(str(path), "not an image file name; skipped"))
    if not candidates and not problems:
        raise BadInputError("no class sub-folders with images found", root)
    headers = read_headers([p for _, p in candidates], max_pixels=max_pixels, decode=decode)
    samples: list[Sample] = []
    for (cls, path), header in zip(candidates, headers):
        if isinstance(header, Problem):
            problems.append(header)
            continue
        samples.append(
            Sample(
                id=path.relative_to(root).as_posix(),
                path=path.resolve(),
                labels=(cls,),
                width=header.width,
                height=header.height,
            )
        )
    classes = tuple(sorted({s.labels[0] for s in samples}))
    return Dataset(
        samples=tuple(samples), classes=classes, multi_label=False, root=root.resolve(),
        problems=tuple(problems),
    )
