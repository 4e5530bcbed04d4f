"""``iconolens evaluate`` and ``iconolens boxes``: measure a run's saliency maps and derive boxes from them."""

from __future__ import annotations

import json
import math
import shlex
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from iconolens.cli.console import CommandConsole
from iconolens.data.records import Dataset
from iconolens.device import DEVICE_HELP
from iconolens.errors import BadInputError
from iconolens.inference import network_on
from iconolens.ray_pool import ADDRESS_HELP, ENGINE_HELP, THREADS_HELP, check_engine, use_threads
from iconolens.run import RunDirectory

stdout = CommandConsole(highlight=False)


class LevelChoice(str, Enum):
    figure = "figure"
    attribute = "attribute"


RUN_HELP = "Run directory (holds dataset.json and maps/<method>/ written by `iconolens explain`)."
LEVEL_HELP = (
    "Which expert boxes to compare with: 'figure' (whole figures, e.g. a saint or a person) or "
    "'attribute' (iconographic symbols such as 'keys - Peter')."
)
SPLIT_HELP = "Use only the images of this split (train, val or test); all images with maps when omitted."


def _dataset(run: RunDirectory, split: str | None) -> Dataset:
    from iconolens.data.dataset_json import load_dataset_json

    if not run.root.is_dir():
        raise BadInputError("run directory does not exist", run.root)
    if not run.dataset_json.is_file():
        raise BadInputError("no dataset.json in the run directory; create the run with `iconolens data` first",
                            run.root)
    dataset = load_dataset_json(run.dataset_json)
    if split is not None:
        dataset = dataset.subset(split)
        if not dataset.samples:
            raise BadInputError(f"no image of the run's dataset is in split {split!r}", run.dataset_json)
    return dataset


def _stores(run: RunDirectory, methods: list[str] | None) -> dict[str, Any]:
    from iconolens.explain import METHODS
    from iconolens.explain.store import MapStore

    available = sorted(p.parent.name for p in run.maps_root.glob("*/meta.json")) if run.maps_root.is_dir() else []
    if methods:
        names = [m.strip() for item in methods for m in item.split(",") if m.strip()]
        for name in names:
            if not (run.maps_dir(name) / "meta.json").is_file():
                if name in METHODS:
                    command = f"iconolens explain --run {shlex.quote(str(run.root))} --methods {name}"
                    hint = f"run `{command}` first"
                else:
                    hint = f"the run has maps of {', '.join(available)}" if available else "the run has no maps"
                raise BadInputError(f"no maps of method {name!r}; {hint}", run.maps_dir(name))
    else:
        names = available
        if not names:
            raise BadInputError("no saliency maps in the run (maps/ is empty); run `iconolens explain` first",
                                run.root)
    stores = {name: MapStore(run.maps_dir(name)) for name in names}
    for store in stores.values():
        store.meta()  # a damaged meta.json is reported here, naming the file
    return stores


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def evaluate_command(
    run: Path = typer.Option(..., "--run", help=RUN_HELP),
    methods: Optional[list[str]] = typer.Option(
        None, "--methods", help="Methods to measure (repeat or comma-separate, e.g. cam,gradcam); default: all "
        "methods with maps in the run."
    ),
    level: LevelChoice = typer.Option(LevelChoice.figure, "--level", help=LEVEL_HELP),
    split: Optional[str] = typer.Option(None, "--split", help=SPLIT_HELP),
    faithfulness_images: int = typer.Option(0, "--faithfulness-images", min=0, help=(
        "Also compute deletion/insertion areas (Petsiuk et al. 2018) with the run's model on this many "
        "images (0: skip; each image costs about 2 x (steps + 1) forward passes per method and label)."
    )),
    steps: int = typer.Option(50, "--steps", min=1, help="Deletion/insertion steps (pixels changed per step: 1/steps)."),
    max_side: int = typer.Option(256, "--max-side", min=0, help=(
        "Measure maps on a grid of at most this many pixels on the image's longer side, boxes scaled alike "
        "(the metrics are area ratios, so only rounding changes); 0 measures on the full image."
    )),
    device: str = typer.Option("auto", "--device", help="Where the model runs for --faithfulness-images: " + DEVICE_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="For --faithfulness-images: " + THREADS_HELP),
    engine: str = typer.Option("inprocess", "--engine", help=ENGINE_HELP),
    address: Optional[str] = typer.Option(None, "--address", help=ADDRESS_HELP),
) -> None:
    """Measure saliency maps against expert boxes over thresholds 0.00..1.00: component IoU, global IoU,
    box coverage, irrelevant attention. Writes RUN/metrics/ (JSON, CSV) and RUN/report/ (curves)."""
    from contextlib import nullcontext

    from iconolens.device import resolve_device
    from iconolens.models.checkpoint import run_model_dir
    from iconolens.ray_pool import import_ray, ray_session

    check_engine(engine, address)
    use_threads(threads)
    if engine == "ray":
        import_ray()
    if faithfulness_images:
        resolve_device(device)  # a device that cannot be used is said before the measuring starts
    rundir = RunDirectory(run)
    dataset = _dataset(rundir, split)
    stores = _stores(rundir, methods)
    if faithfulness_images:
        run_model_dir(rundir)  # so is a run without a model
    with ray_session(address) if engine == "ray" else nullcontext():  # one Ray for both measures
        _localisation(rundir, dataset, stores, level, split, max_side, engine, address)
        if faithfulness_images:
            _faithfulness(rundir, dataset, stores, faithfulness_images, steps, split, device, engine, address)


def _localisation(rundir: RunDirectory, dataset: Dataset, stores: dict[str, Any], level: LevelChoice,
                  split: str | None, max_side: int, engine: str, address: str | None) -> None:
    from iconolens.atomic import write_json_atomically
    from iconolens.evaluate.localisation import evaluate_localisation, require_measured
    from iconolens.report.figures import localisation_curves_figures
    from iconolens.report.tables import write_csv

    import torch

    if engine == "ray":
        from iconolens.evaluate.ray_engine import evaluate_localisation_on_ray

        report = evaluate_localisation_on_ray(dataset, stores, level=level.value, max_side=max_side or None,
                                              address=address)
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # per-map tensors are small: more threads only add synchronisation
        try:
            report = evaluate_localisation(dataset, stores, level=level.value, max_side=max_side or None)
        finally:
            torch.set_num_threads(threads)
    require_measured(report, dataset, stores, rundir.dataset_json)  # before anything is written or replaced
    stem = f"localisation_{level.value}" + (f"_{split}" if split else "")
    json_path = write_json_atomically(rundir.metrics_dir / f"{stem}.json", report.to_json())
    csv_path = write_csv(rundir.metrics_dir / f"{stem}.csv", report.rows())
    peaks = []
    for method in report.methods:
        for metric in report.metrics:
            value, at = report.peak(method, metric.key)
            peaks.append({"method": method, "metric": metric.key, "best": _fmt(value, 6), "at_threshold": _fmt(at, 2),
                          "higher_is_better": metric.higher_is_better})
    summary_path = write_csv(rundir.metrics_dir / f"{stem}_peaks.csv", peaks)
    figures = localisation_curves_figures(report, rundir.report_dir, prefix=f"{stem}_")

    table = Table(title=f"Localisation against {level.value} boxes (best over thresholds, all classes)")
    table.add_column("method")
    for metric in report.metrics:
        table.add_column(f"{metric.title} {'↑' if metric.higher_is_better else '↓'}", justify="right")
    table.add_column("maps", justify="right")
    for method in report.methods:
        cells = []
        for metric in report.metrics:
            value, at = report.peak(method, metric.key)
            cells.append(f"{_fmt(value)} @ {_fmt(at, 2)}")
        table.add_row(method, *cells, str(report.counts[method]["maps"]))
    stdout.print(table)
    for method, counts in report.counts.items():
        skipped = {k: v for k, v in counts.items() if k not in ("maps", "boxes") and v}
        if skipped:
            stdout.print(f"{method}: skipped " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items()))
    stdout.print(f"wrote {json_path}, {csv_path}, {summary_path} and {len(figures)} curves in {rundir.report_dir}")


def _faithfulness(rundir: RunDirectory, dataset: Dataset, stores: dict[str, Any], n_images: int, steps: int,
                  split: str | None, device: str, engine: str, address: str | None) -> None:
    from iconolens.atomic import write_json_atomically
    from iconolens.evaluate.declarations import FAITHFULNESS_METRICS
    from iconolens.device import resolve_device
    from iconolens.evaluate.faithfulness import faithfulness_areas
    from iconolens.models.checkpoint import load_run_model, run_model_dir
    from iconolens.report.tables import markdown_table, write_csv

    chosen = [s for s in dataset.samples if s.labels and any(st.has(s.id) for st in stores.values())][:n_images]
    if not chosen:
        raise BadInputError("no labelled image has stored maps, so faithfulness cannot be measured", rundir.root)
    if engine == "ray":
        from iconolens.evaluate.ray_engine import faithfulness_on_ray

        results = faithfulness_on_ray(run_model_dir(rundir), chosen, stores, steps=steps, device=device,
                                      address=address)
    else:
        model, meta = load_run_model(rundir)
        model = network_on(model, resolve_device(device), meta.input_size)
        results = faithfulness_areas(model, meta, chosen, stores, steps=steps, workers=1).means()
    rows = [{"method": m, **r} for m, r in results.items()]
    stem = "faithfulness" + (f"_{split}" if split else "")
    write_json_atomically(rundir.metrics_dir / f"{stem}.json",
                          {"steps": steps, "images": len(chosen), "metrics": [m.to_json() for m in FAITHFULNESS_METRICS],
                           "methods": {m: {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                           for k, v in r.items()} for m, r in results.items()}})
    write_csv(rundir.metrics_dir / f"{stem}.csv", rows)
    stdout.print(f"Faithfulness on {len(chosen)} images ({steps} steps):")
    stdout.print(markdown_table(rows, FAITHFULNESS_METRICS, extra=[("pairs", "maps")]))


def boxes_command(
    run: Path = typer.Option(..., "--run", help=RUN_HELP),
    method: str = typer.Option(..., "--method", help="Method whose maps the boxes are drawn from, e.g. gradcam."),
    level: LevelChoice = typer.Option(LevelChoice.figure, "--level", help=(
        "'figure': one box around each class's whole foreground; 'attribute': one box per connected "
        "component (symbols)."
    )),
    gate: bool = typer.Option(True, "--gate/--no-gate", help=(
        "Keep only maps that already localise their expert boxes (component IoU > 0.165 at t=0.1 for "
        "attributes, global IoU > 0.24 at t=0.05 for figures); needs expert boxes."
    )),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=1.0, help=(
        "Foreground threshold on the normalised map (default 0.1 for attributes, 0.05 for figures)."
    )),
    percentile: Optional[float] = typer.Option(None, "--percentile", min=0.0, max=100.0, help=(
        "Use each map's own percentile as threshold instead (e.g. 90), as Bae et al. (2020) propose."
    )),
    keep_weak: bool = typer.Option(False, "--keep-weak/--drop-weak", help=(
        "Attribute boxes: keep components whose mean activation is below half the mean of all components."
    )),
    gate_all: bool = typer.Option(False, "--gate-all-methods", help=(
        "Keep a map only if the maps of every method in the run pass the gate (the thesis's selection)."
    )),
    split: Optional[str] = typer.Option(None, "--split", help=SPLIT_HELP),
    instances: bool = typer.Option(False, "--instances/--one-box", help=(
        "--instances: one box per salient instance (each local peak of the map grown into its own region), so "
        "a painting with several people gets a box per person; results are named <method>-instances. "
        "--one-box: the thesis's boxes (one per class, or per component for attributes)."
    )),
    min_distance: Optional[float] = typer.Option(None, "--min-distance", min=0.0, max=1.0, help=(
        "With --instances: peaks closer than this fraction of the image's longer side are one instance "
        "(default 0.1)."
    )),
    relative_height: Optional[float] = typer.Option(None, "--relative-height", min=0.0, max=1.0, help=(
        "With --instances: ignore peaks lower than this fraction of the map's maximum (default 0.3)."
    )),
    region_fraction: Optional[float] = typer.Option(None, "--region-fraction", min=0.0, max=1.0, help=(
        "With --instances: an instance's region keeps the pixels at or above this fraction of its own "
        "peak (default 0.2)."
    )),
    nms_iou: Optional[float] = typer.Option(None, "--nms-iou", min=0.0, max=1.0, help=(
        "With --instances: drop a box whose IoU with a better-scored box exceeds this (default 0.5)."
    )),
    max_instances: Optional[int] = typer.Option(None, "--max-instances", min=1, help=(
        "With --instances: at most this many boxes per image and class (default 20)."
    )),
    segments: bool = typer.Option(False, "--segments", help=(
        "Snap boxes to the painted objects the map points at: GrabCut segments each image with the map's top 5% "
        "as certain object and its top 30% as likely object, one box per object region; results are named "
        "<method>-segments. Reads every image, so it is slower."
    )),
    engine: str = typer.Option("inprocess", "--engine", help=ENGINE_HELP),
    address: Optional[str] = typer.Option(None, "--address", help=ADDRESS_HELP),
) -> None:
    """Derive boxes from saliency maps (weakly supervised localisation): COCO detections and a pseudo
    ground-truth COCO file in RUN/boxes/, and their scores against expert boxes (average IoU, GT-known
    Loc, mAP at IoU 0.5, CorLoc, recall at IoU 0.5, mAP with difficult boxes ignored, boxes per image) as a
    row of RUN/metrics/boxes_<level>.csv, with an IoU histogram in RUN/report/. --instances finds every
    instance of a class (each person of a group) instead of one box around all of them."""
    from iconolens.atomic import write_json_atomically, write_text_atomically
    from iconolens.evaluate.boxes import BoxRecipe, derive_boxes, write_derived_boxes
    from iconolens.evaluate.declarations import BOX_TABLE_METRICS
    from iconolens.evaluate.detection import evaluate_derived_boxes
    from iconolens.report.figures import iou_histogram
    from iconolens.report.tables import markdown_table, write_csv

    check_engine(engine, address)
    if threshold is not None and percentile is not None:
        raise BadInputError("give --threshold or --percentile, not both")
    given = {"--min-distance": min_distance, "--relative-height": relative_height,
             "--region-fraction": region_fraction, "--nms-iou": nms_iou, "--max-instances": max_instances}
    instance_options = {name.lstrip("-").replace("-", "_"): v for name, v in given.items() if v is not None}
    if not instances and instance_options:
        names = ", ".join(name for name, v in given.items() if v is not None)
        raise BadInputError(f"{names} only apply with --instances")
    if instances and (threshold is not None or percentile is not None):
        raise BadInputError("--threshold and --percentile apply to --one-box only; instance boxes grow from each peak")
    if segments and (instances or threshold is not None or percentile is not None):
        raise BadInputError("--segments is seeded by the map's own percentiles; give it without --instances, "
                            "--threshold or --percentile")
    rundir = RunDirectory(run)
    dataset = _dataset(rundir, split)
    stores = _stores(rundir, [method])
    others = {}
    if gate_all:
        others = {m: s for m, s in _stores(rundir, None).items() if m != method}
    from iconolens.evaluate.segments import SegmentSeeds

    recipe = BoxRecipe(level=level.value, gate=gate, threshold=threshold, percentile=percentile,
                       drop_weak_components=not keep_weak, instances=instances,
                       segments=SegmentSeeds() if segments else None, **instance_options)
    name = f"{method}-instances" if instances else f"{method}-segments" if segments else method
    if engine == "ray":
        from iconolens.evaluate.ray_engine import derive_boxes_on_ray

        derived = derive_boxes_on_ray(dataset, stores[method], recipe, method=name, gate_stores=others,
                                      address=address)
    else:
        derived = derive_boxes(dataset, stores[method], recipe, method=name, gate_stores=others)
    paths = write_derived_boxes(derived, dataset, rundir.boxes_dir)
    scores = evaluate_derived_boxes(dataset, derived.boxes, name, level=level.value, image_ids=derived.selected)
    record = {"recipe": recipe.to_json(), "counts": derived.counts, "scores": scores.to_json(),
              "files": {k: str(v) for k, v in paths.items()}}
    write_json_atomically(rundir.metrics_dir / f"boxes_{level.value}_{name}.json", record)

    rows, ious = [], {}
    for path in sorted(rundir.metrics_dir.glob(f"boxes_{level.value}_*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            row = {k: v for k, v in data["scores"].items()
                   if k not in ("ap_per_class", "ap_per_class_ignore_difficult", "ious")}
            ious[row["method"]] = data["scores"]["ious"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise BadInputError("box scores file is damaged; delete it and re-run `iconolens boxes`", path) from None
        rows.append(row)
    columns: list[str] = []  # rows written before a measure existed lack its key
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    table_stem = rundir.metrics_dir / f"boxes_{level.value}"
    write_csv(table_stem.with_suffix(".csv"), rows, columns)
    write_text_atomically(table_stem.with_suffix(".md"), markdown_table(
        rows, BOX_TABLE_METRICS, extra=[("boxes_per_image", "boxes / image"), ("boxes", "boxes"),
                                        ("truth_boxes", "expert boxes"), ("images", "images")]))
    histogram = iou_histogram(ious, rundir.report_dir / f"boxes_{level.value}_iou_histogram.png")

    stdout.print(
        f"{name}: {derived.counts['boxes']} boxes on {derived.counts['selected_images']} of "
        f"{derived.counts['images']} images with maps ({derived.counts['gated_out']} maps gated out)"
    )
    stdout.print(markdown_table(rows, BOX_TABLE_METRICS, extra=[("boxes_per_image", "boxes / image")]))
    stdout.print(f"wrote {paths['detections']}, {paths['pseudo_coco']} (each with a IIIF AnnotationPage beside it, "
                 f"*.annotations.json), {table_stem.with_suffix('.csv')} and {histogram}")


def register(app: typer.Typer) -> None:
    """Add `evaluate` and `boxes` to the main app."""
    app.command("evaluate", help=_one_paragraph(evaluate_command.__doc__))(evaluate_command)
    app.command("boxes", help=_one_paragraph(boxes_command.__doc__))(boxes_command)


def _one_paragraph(text: str | None) -> str:
    """A docstring as help text: its hard line breaks joined, so the terminal wraps it."""
    return " ".join((text or "").split())
