"""``iconolens data ...``: read, check, describe, split, filter, convert and generate collections."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from iconolens.cli.console import CommandConsole
from iconolens.data.images import DEFAULT_MAX_PIXELS
from iconolens.data.records import Dataset
from iconolens.errors import BadInputError

if TYPE_CHECKING:
    from iconolens.data.iiif import IIIFOptions

stdout = CommandConsole(highlight=False)
stderr = CommandConsole(stderr=True, highlight=False, soft_wrap=True)

MAX_LISTED_PROBLEMS = 20

data_app = typer.Typer(
    help=(
        "Collections of artworks: describe them (stats), split them into train/val/test for a run, "
        "filter rare iconographic attributes, convert them to COCO JSON, or generate a synthetic one."
    ),
    no_args_is_help=True,
)


class CollectionFormat(str, Enum):
    auto = "auto"
    folder = "folder"
    csv = "csv"
    coco = "coco"
    voc = "voc"
    dataset = "dataset"
    iiif = "iiif"


class LabelTask(str, Enum):
    presence = "presence"
    style = "style"


FORMAT_HELP = (
    "Collection format. 'auto' guesses from the path: an http(s) URL (a IIIF manifest or collection), a .csv "
    "file (path,labels), a .json file (a IIIF manifest, COCO, or a run's dataset.json), a folder with "
    "Annotations/ and JPEGImages/ (Pascal VOC or People-Art), a folder with annotations.json (COCO), a run "
    "directory (dataset.json), else a folder per class."
)
COLLECTION_HELP = "The collection: a folder, a file, or the URL of a IIIF manifest or collection (see --format)."
LABEL_FIELD_HELP = (
    "IIIF: label each canvas with the values of this metadata field (e.g. Subject; any language, "
    "';'-separated). Default: the labels of the canvas's region annotations."
)
LABELS_CSV_HELP = "IIIF: label each canvas from this CSV of canvas,labels (canvas ids, ';'-separated labels)."
IIIF_SIZE_HELP = "IIIF: longest side, in pixels, of the images asked from an Image API service; 0 for full size."
IIIF_CACHE_HELP = "IIIF: folder where downloaded images are kept (default ~/.cache/iconolens/iiif)."
TASK_HELP = (
    "Labels of a VOC/People-Art tree: 'presence' labels each image with the classes it shows (People-Art: "
    "['person'] or [], a one-class multi-label task); 'style' labels it with its folder (the art style)."
)
MAX_PIXELS_HELP = (
    "Refuse images with more pixels than this (protection against decompression bombs); "
    "raise it for trusted, very large scans."
)
DECODE_HELP = (
    "Decode every image while reading (slow; also finds damage inside the pixel data) instead of "
    "reading only headers and end markers."
)

FormatOption = typer.Option(CollectionFormat.auto, "--format", help=FORMAT_HELP)
TaskOption = typer.Option(LabelTask.presence, "--task", help=TASK_HELP)
MaxPixelsOption = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help=MAX_PIXELS_HELP)
DecodeOption = typer.Option(False, "--decode/--headers-only", help=DECODE_HELP)
LabelFieldOption = typer.Option(None, "--label-field", help=LABEL_FIELD_HELP)
LabelsCsvOption = typer.Option(None, "--labels-csv", help=LABELS_CSV_HELP, dir_okay=False)
IIIFSizeOption = typer.Option(1024, "--iiif-size", min=0, help=IIIF_SIZE_HELP)
IIIFCacheOption = typer.Option(None, "--iiif-cache", help=IIIF_CACHE_HELP, file_okay=False)


def _iiif(label_field: str | None, labels_csv: Path | None, size: int, cache: Path | None) -> IIIFOptions:
    """The IIIF reading options of a command's ``--label-field``, ``--labels-csv``, ``--iiif-*`` options."""
    from iconolens.data.iiif import IIIFOptions

    return IIIFOptions(size=size or None, label_field=label_field, labels_csv=labels_csv, cache_dir=cache)


def _load(
    path: str, format: CollectionFormat, task: LabelTask, max_pixels: int, decode: bool,
    iiif: IIIFOptions | None = None,
) -> Dataset:
    from iconolens.data.collections import load_collection, nothing_usable_error

    dataset = load_collection(
        path, max_pixels=max_pixels, format=format.value, task=task.value, decode=decode, allow_empty=True,
        iiif=iiif,
    )
    _report_problems(dataset)
    if not dataset.samples:
        raise nothing_usable_error(dataset, path)
    return dataset


def _report_problems(dataset: Dataset) -> None:
    if not dataset.problems:
        return
    count = len(dataset.problems)
    stderr.print(f"{count} file{'s' if count != 1 else ''} skipped:", markup=False)
    for problem in dataset.problems[:MAX_LISTED_PROBLEMS]:
        stderr.print(f"  {problem.path}: {problem.message}", markup=False)
    if count > MAX_LISTED_PROBLEMS:
        stderr.print(f"  ... and {count - MAX_LISTED_PROBLEMS} more", markup=False)


def _histogram_text(histogram: dict[int, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in histogram.items())


@data_app.command("stats")
def stats_command(
    path: str = typer.Argument(
        ..., help="A collection (any format, or a IIIF manifest URL), a run directory or its dataset.json."
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Also write the statistics to this JSON file.", dir_okay=False
    ),
    format: CollectionFormat = FormatOption,
    task: LabelTask = TaskOption,
    max_pixels: int = MaxPixelsOption,
    decode: bool = DecodeOption,
    label_field: str | None = LabelFieldOption,
    labels_csv: Path | None = LabelsCsvOption,
    iiif_size: int = IIIFSizeOption,
    iiif_cache: Path | None = IIIFCacheOption,
) -> None:
    """Describe a collection: images, labels per image, class distribution, boxes, attributes per class."""
    from iconolens.atomic import write_json_atomically
    from iconolens.data.stats import collection_stats

    dataset = _load(path, format, task, max_pixels, decode, _iiif(label_field, labels_csv, iiif_size, iiif_cache))
    stats = collection_stats(dataset)

    summary = Table(title=f"Collection {path}", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row("images", str(stats.images))
    summary.add_row("classes", f"{stats.classes} ({'multi-label' if stats.multi_label else 'single-label'})")
    summary.add_row("splits", ", ".join(f"{k}: {v}" for k, v in stats.splits.items()))
    summary.add_row("labels per image (mean)", f"{stats.labels_per_image.mean:.2f}")
    summary.add_row("labels per image (count: images)", _histogram_text(stats.labels_per_image.histogram))
    summary.add_row("figure boxes", str(stats.figure_boxes))
    summary.add_row("attribute boxes", str(stats.attribute_boxes))
    summary.add_row("difficult boxes", str(stats.difficult_boxes))
    summary.add_row("boxes per image (mean)", f"{stats.boxes_per_image.mean:.2f}")
    summary.add_row("files skipped", str(stats.problems))
    stdout.print(summary)

    classes = Table(title="Class distribution")
    classes.add_column("class")
    classes.add_column("images", justify="right")
    classes.add_column("share", justify="right")
    for name, count in stats.class_images.items():
        share = count / stats.images if stats.images else 0.0
        classes.add_row(name, str(count), f"{share:.1%}")
    stdout.print(classes)

    if stats.attributes:
        attributes = Table(title="Attribute frequency per class")
        for column in ("class", "attribute", "images", "of class images", "fraction"):
            attributes.add_column(column, justify="left" if column in ("class", "attribute") else "right")
        for item in stats.attributes:
            attributes.add_row(
                item.figure_class, item.attribute, str(item.images), str(item.class_images), f"{item.fraction:.1%}"
            )
        stdout.print(attributes)

    if json_out is not None:
        write_json_atomically(json_out, stats.to_json())
        stdout.print(f"statistics written to {json_out}", markup=False)


def _parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise BadInputError(f"--fractions must be three numbers like 0.8,0.1,0.1, got {text!r}") from None
    if len(values) != 3:
        raise BadInputError(f"--fractions must be three numbers like 0.8,0.1,0.1, got {text!r}")
    return values  # type: ignore[return-value]


@data_app.command("split")
def split_command(
    collection: str = typer.Argument(..., help=COLLECTION_HELP),
    out: Path = typer.Option(..., "--out", help="Run directory; RUN/dataset.json is written there."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same split."),
    fractions: str = typer.Option(
        "0.8,0.1,0.1", "--fractions", help="Train, val and test fractions, comma-separated, summing to 1."
    ),
    keep_split: bool = typer.Option(
        False, "--keep-split",
        help="Keep the split the collection publishes (People-Art's lists, a COCO image's or dataset.json's "
        "'split') instead of drawing one, so results compare with published ones.",
    ),
    format: CollectionFormat = FormatOption,
    task: LabelTask = TaskOption,
    max_pixels: int = MaxPixelsOption,
    decode: bool = DecodeOption,
    label_field: str | None = LabelFieldOption,
    labels_csv: Path | None = LabelsCsvOption,
    iiif_size: int = IIIFSizeOption,
    iiif_cache: Path | None = IIIFCacheOption,
) -> None:
    """Split a collection into train/val/test (stratified, seeded) and write the run's dataset.json.

    Classes too rare to appear in every split are dropped, and the command says which.
    """
    from iconolens.data.dataset_json import save_dataset_json
    from iconolens.data.splits import SplitOutcome, nothing_left_error, split_counts, stratified_split
    from iconolens.run import RunDirectory

    wanted = _parse_fractions(fractions)
    dataset = _load(
        collection, format, task, max_pixels, decode, _iiif(label_field, labels_csv, iiif_size, iiif_cache)
    )
    if keep_split:
        unassigned = [s.id for s in dataset.samples if s.split is None]
        if unassigned:
            raise BadInputError(
                f"{len(unassigned)} of {len(dataset)} images have no published split (first: {unassigned[0]}); "
                "drop --keep-split to draw one", collection,
            )
        outcome = SplitOutcome(dataset, (), 0)
    else:
        outcome = stratified_split(dataset, seed=seed, fractions=wanted)
    if not outcome.dataset.samples or not outcome.dataset.classes:
        raise nothing_left_error(dataset, collection)
    target = save_dataset_json(outcome.dataset, RunDirectory(out).dataset_json)
    title = "published split" if keep_split else f"seed {seed}"
    table = Table(title=f"Split of {collection} ({title})")
    table.add_column("split")
    table.add_column("images", justify="right")
    for name, count in split_counts(outcome.dataset).items():
        table.add_row(name, str(count))
    stdout.print(table)
    if outcome.dropped_classes:
        stdout.print(
            f"dropped {len(outcome.dropped_classes)} class(es) absent from some split: "
            + ", ".join(outcome.dropped_classes),
            markup=False,
        )
    if outcome.removed_samples:
        stdout.print(f"removed {outcome.removed_samples} image(s) left without a label", markup=False)
    stdout.print(f"dataset written to {target}", markup=False)


@data_app.command("filter-attributes")
def filter_attributes_command(
    source: str = typer.Argument(
        ..., help="A collection (or a IIIF manifest URL), a run directory or a dataset.json."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help=(
            "Where to write the filtered dataset.json: a .json file, or a run directory. "
            "Default: overwrite SOURCE when it is a run or a dataset.json."
        ),
    ),
    min_fraction: float = typer.Option(
        0.05,
        "--min-fraction",
        min=0.0,
        max=1.0,
        help="Keep an attribute only if at least this fraction of its class's images show it.",
    ),
    format: CollectionFormat = FormatOption,
    task: LabelTask = TaskOption,
    max_pixels: int = MaxPixelsOption,
    decode: bool = DecodeOption,
    label_field: str | None = LabelFieldOption,
    labels_csv: Path | None = LabelsCsvOption,
    iiif_size: int = IIIFSizeOption,
    iiif_cache: Path | None = IIIFCacheOption,
) -> None:
    """Drop iconographic attribute boxes that appear in too few images of their class."""
    from iconolens.data.attributes import attribute_frequencies, filter_attributes
    from iconolens.data.collections import detect_format
    from iconolens.data.dataset_json import save_dataset_json

    if out is None:
        if (format.value if format != CollectionFormat.auto else detect_format(source)) != "dataset":
            raise BadInputError("give --out: only a run or a dataset.json is rewritten in place", source)
        out = Path(source)
    target = out if out.suffix.lower() == ".json" else out / "dataset.json"
    dataset = _load(source, format, task, max_pixels, decode, _iiif(label_field, labels_csv, iiif_size, iiif_cache))
    frequencies = attribute_frequencies(dataset)
    filtered = filter_attributes(dataset, min_fraction=min_fraction)
    kept = {b.label for s in filtered.samples for b in s.boxes if b.level == "attribute"}

    table = Table(title=f"Attributes (keep at least {min_fraction:.1%} of the class's images)")
    for column in ("class", "attribute", "fraction", "kept"):
        table.add_column(column)
    for item in frequencies:
        table.add_row(item.figure_class, item.attribute, f"{item.fraction:.1%}", "yes" if item.label in kept else "no")
    stdout.print(table)
    save_dataset_json(filtered, target)
    dropped = sum(1 for f in frequencies if f.label not in kept)
    stdout.print(f"kept {len(frequencies) - dropped} attribute(s), dropped {dropped}; written to {target}", markup=False)


@data_app.command("convert")
def convert_command(
    source: str = typer.Argument(..., help=COLLECTION_HELP),
    out: Path = typer.Option(..., "--out", help="The COCO JSON file to write.", dir_okay=False),
    format: CollectionFormat = FormatOption,
    task: LabelTask = TaskOption,
    max_pixels: int = MaxPixelsOption,
    decode: bool = DecodeOption,
    label_field: str | None = LabelFieldOption,
    labels_csv: Path | None = LabelsCsvOption,
    iiif_size: int = IIIFSizeOption,
    iiif_cache: Path | None = IIIFCacheOption,
) -> None:
    """Write any collection as COCO JSON (figures and attributes as categories, image-level labels kept)."""
    from iconolens.data.coco import write_coco

    dataset = _load(source, format, task, max_pixels, decode, _iiif(label_field, labels_csv, iiif_size, iiif_cache))
    write_coco(dataset, out)
    boxes = sum(len(s.boxes) for s in dataset.samples)
    stdout.print(f"{len(dataset)} images and {boxes} boxes written to {out}", markup=False)


@data_app.command("synth")
def synth_command(
    out: Path = typer.Option(..., "--out", help="Folder to write the collection into (annotations.json + images/)."),
    images: int = typer.Option(200, "--images", min=1, help="Number of images to generate."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same bytes."),
    size: int = typer.Option(224, "--size", help="Side of the square images, in pixels (at least 96)."),
    max_figures: int = typer.Option(3, "--max-figures", min=1, max=3, help=(
        "Most saints per image (each image gets 1 to this many); 1 makes a single-label collection."
    )),
    iiif: Path | None = typer.Option(
        None, "--iiif", file_okay=False,
        help="Also publish the collection as a static IIIF site in this folder: manifest.json (Presentation 3, "
        "canvases twice the image size, labels in the metadata field Subject, boxes as tagging annotations) "
        "and level-0 images.",
    ),
    iiif_base_url: str = typer.Option(
        "http://localhost:8000/", "--iiif-base-url",
        help="The URL the --iiif folder will be served at (ids in the manifest start with it).",
    ),
) -> None:
    """Generate the synthetic iconography collection: saints recognisable only by their attributes."""
    from iconolens.data.synth import write_synthetic_collection

    path = write_synthetic_collection(out, n_images=images, seed=seed, image_size=size,
                                      max_figures=max_figures)
    stdout.print(f"{images} images written; annotations at {path}", markup=False)
    if iiif is not None:
        from iconolens.data.coco import read_coco
        from iconolens.data.iiif_site import write_iiif_site

        manifest = write_iiif_site(read_coco(path), iiif, iiif_base_url)
        stdout.print(
            f"IIIF site written to {iiif}; serve that folder at {iiif_base_url} and read "
            f"{iiif_base_url.rstrip('/')}/{manifest.name} (e.g. --label-field Subject)", markup=False,
        )


def register(app: typer.Typer) -> None:
    """Add the ``data`` commands to the main app."""
    app.add_typer(data_app, name="data")
