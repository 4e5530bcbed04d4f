"""`iconolens explain` (saliency maps for every image of a run) and `iconolens overlay` (PNG pictures of them)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import typer

from iconolens.cli.console import CommandConsole
from iconolens.data.images import DEFAULT_MAX_PIXELS
from iconolens.device import DEVICE_HELP
from iconolens.inference import PRECISION_HELP
from iconolens.errors import BadInputError
from iconolens.ray_pool import ADDRESS_HELP, ENGINE_HELP, THREADS_HELP, check_engine, use_threads

console = CommandConsole(highlight=False, soft_wrap=True)
errors = CommandConsole(stderr=True, highlight=False, soft_wrap=True)

DEFAULT_METHODS = "cam,gradcam,gradcampp,smoothgradcampp"


def _split_list(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _parse_methods(text: str) -> list[str]:
    from iconolens.explain import METHODS

    methods = _split_list(text)
    if not methods:
        raise BadInputError("--methods is empty; choose from " + ", ".join(METHODS))
    for method in methods:
        if method not in METHODS:
            raise BadInputError(f"unknown method {method!r} in --methods; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def _parse_classes(text: str | None, known: Sequence[str], where: str) -> list[str]:
    chosen = _split_list(text)
    for name in chosen:
        if name not in known:
            raise BadInputError(f"there is no class {name!r} in {where}; its classes are {', '.join(known)}")
    return chosen


def _load_run(run: Path):
    from iconolens.data.dataset_json import load_dataset_json
    from iconolens.run import RunDirectory

    directory = RunDirectory(run)
    if not directory.dataset_json.is_file():
        raise BadInputError("no dataset.json in the run folder (create it with `iconolens data split`)", run)
    return directory, load_dataset_json(directory.dataset_json)


def explain(
    run: Path = typer.Option(..., "--run", help="Run folder with dataset.json and a trained model in model/."),
    methods: str = typer.Option(
        DEFAULT_METHODS,
        "--methods",
        help=(
            "Comma-separated saliency methods: cam, gradcam, gradcampp, smoothgradcampp, xgradcam, hirescam, "
            "layercam, ablationcam, eigencam (one forward pass each with a GAP + linear head), layercam_fused "
            "(LayerCAM of the stride 8, 16 and 32 stages fused: finer maps), scorecam (one forward pass per "
            "feature channel, shared by all classes), vbp, rise."
        ),
    ),
    classes: Optional[str] = typer.Option(
        None, "--classes", help="Comma-separated class names to explain (default: every class of the model)."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per forward pass."),
    split: Optional[str] = typer.Option(
        None, "--split", help="Explain only this split (train, val or test); default: every image."
    ),
    target_layer: Optional[str] = typer.Option(
        None,
        "--target-layer",
        help="Module whose output holds the feature maps (e.g. layer4, features); found automatically if omitted.",
    ),
    n: int = typer.Option(5, "--n", help="Smooth Grad-CAM++: number of noisy copies of each image."),
    sigma: float = typer.Option(
        0.15, "--sigma", help="Smooth Grad-CAM++: noise standard deviation as a fraction of the image's value range."
    ),
    masks: int = typer.Option(1000, "--masks", help="RISE: number of random masks per image."),
    grid: int = typer.Option(7, "--grid", help="RISE: masks are drawn on a grid of this many cells per side."),
    p: float = typer.Option(0.5, "--p", help="RISE: probability that a grid cell is kept."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise (Smooth Grad-CAM++) and masks (RISE)."),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS, "--max-pixels", help="Refuse to decode images with more pixels than this."
    ),
    image_size: Optional[int] = typer.Option(
        None, "--image-size", min=16,
        help="Input size to explain at (default: the classifier's own). Maps grow with it: a stride-32 network "
        "gives 14 x 14 maps at 448 px, fine enough to separate figures standing close together. "
        "Not for vit_b_16, which takes 224 px only.",
    ),
    workers: int = typer.Option(
        1, "--workers", min=0,
        help="Processes decoding and resizing images while the network runs (0: decode in this process).",
    ),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    precision: str = typer.Option("full", "--precision", help=PRECISION_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    engine: str = typer.Option("inprocess", "--engine", help=ENGINE_HELP),
    address: Optional[str] = typer.Option(None, "--address", help=ADDRESS_HELP),
) -> None:
    """Compute raw saliency maps for every image of the run and store them under RUN/maps/<method>/.

    Images that already have maps are skipped, so an interrupted run resumes; images that cannot be read
    are listed and skipped.
    """
    from iconolens.explain.collection import ExplainSettings, explain_run
    from iconolens.run import RunDirectory

    check_engine(engine, address)
    use_threads(threads)
    chosen_methods = _parse_methods(methods)
    directory = RunDirectory(run)
    chosen = _split_list(classes) or None
    settings = ExplainSettings(n=n, sigma=sigma, seed=seed, masks=masks, grid=grid, p=p, batch_size=batch_size,
                               target_layer=target_layer, image_size=image_size, max_pixels=max_pixels,
                               workers=workers, device=device, precision=precision)
    if engine == "ray":
        from iconolens.explain.ray_engine import explain_run_on_ray

        outcome = explain_run_on_ray(directory, chosen_methods, chosen, split, settings, address=address)
    else:
        outcome = explain_run(directory, chosen_methods, chosen, split, settings)
    for method in chosen_methods:
        console.print(
            f"{method}: {outcome.written[method]} images written, {outcome.done_before[method]} already done "
            f"-> {directory.maps_dir(method)}"
        )
    if outcome.problems:
        report = directory.maps_root / "problems.json"
        errors.print(f"{len(outcome.problems)} images could not be read and were skipped (listed in {report}):")
        for problem in outcome.problems:
            errors.print(f"  {problem['message']}")


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _slug(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._") or "x"


def overlay(
    run: Path = typer.Option(..., "--run", help="Run folder with dataset.json and maps made by `iconolens explain`."),
    method: str = typer.Option(..., "--method", help="Which stored maps to draw (e.g. gradcam)."),
    images: str = typer.Option(..., "--images", help="Comma-separated image ids from dataset.json."),
    classes: Optional[str] = typer.Option(
        None, "--classes", help="Comma-separated classes to draw (default: each image's own labels)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the PNG files (created if missing)."),
    boxes: bool = typer.Option(True, "--boxes/--no-boxes", help="Draw the expert boxes of the class in red."),
    derived: Optional[Path] = typer.Option(
        None, "--derived", help="COCO JSON of boxes derived from maps, drawn in green (matched by image id)."
    ),
    alpha: float = typer.Option(0.5, "--alpha", min=0.0, max=1.0, help="Weight of the heat map in the blend."),
    colormap: str = typer.Option("jet", "--colormap", help="Matplotlib colour map of the heat."),
    max_side: int = typer.Option(1024, "--max-side", min=16, help="Shrink pictures so no side exceeds this."),
) -> None:
    """Write PNG pictures of saliency maps over their paintings, one per image and class."""
    import matplotlib
    import torch

    from iconolens.data.images import load_image
    from iconolens.explain import normalise_maps
    from iconolens.explain.store import MapStore
    from iconolens.report.overlays import display_size, heatmap_overlay, write_png

    directory, dataset = _load_run(run)
    store = MapStore(directory.maps_dir(method))
    store_classes = store.classes
    if colormap not in matplotlib.colormaps:
        raise BadInputError(f"unknown colour map {colormap!r}; try jet, viridis, inferno or magma")
    chosen = _parse_classes(classes, store_classes, f"the {method} maps")
    by_id = {s.id: s for s in dataset.samples}
    ids = _split_list(images)
    if not ids:
        raise BadInputError("--images is empty; give image ids from dataset.json")
    for sid in ids:
        if sid not in by_id:
            raise BadInputError(f"there is no image with id {sid!r}", directory.dataset_json)
    derived_by_id: dict[str, Any] = {}
    if derived is not None:
        from iconolens.data.coco import read_coco

        derived_set = read_coco(derived)
        derived_by_id = {s.id: s for s in derived_set.samples}
        derived_by_id.update({s.path.name: s for s in derived_set.samples})

    count = 0
    for sid in ids:
        sample = by_id[sid]
        maps, _ = store.read(sid)
        picture = load_image(sample.path)
        width, height = display_size(*picture.size, max_side)
        wanted = chosen or [c for c in sample.labels if c in store_classes]
        if not wanted:
            raise BadInputError(f"image {sid!r} has no label among the maps' classes; choose some with --classes")
        other = derived_by_id.get(sid) or derived_by_id.get(sample.path.name)
        for cls in wanted:
            heat = normalise_maps(torch.from_numpy(maps[None, [store_classes.index(cls)]]), (height, width))
            result = heatmap_overlay(
                picture,
                heat[0, 0].numpy(),
                truth_boxes=sample.boxes_of(cls) if boxes else (),
                derived_boxes=other.boxes_of(cls) if other is not None else (),
                alpha=alpha,
                colormap=colormap,
                max_side=max_side,
            )
            write_png(out / f"{_slug(sid)}.{method}.{_slug(cls)}.png", result)
            count += 1
    console.print(f"{count} overlays written to {out}")


def register(app: typer.Typer) -> None:
    """Add `explain` and `overlay` to the main app."""
    app.command("explain", help="Compute saliency maps (all classes) for every image of a run.")(explain)
    app.command("overlay", help="Draw stored saliency maps over their paintings as PNG files.")(overlay)
