"""``iconolens demo``: the whole chain on the synthetic iconography collection, as a user would type it.

Each stage is the same command a user runs, printed before it runs, so the demo doubles as a tutorial.
Every stage resumes from what is already on disk, so an interrupted demo can simply be started again.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import typer
from rich.console import Console

console = Console(highlight=False)

#: All four come from one shared forward pass (a GAP + linear head gives their gradients in closed form).
CAM_METHODS = ("cam", "gradcam", "gradcampp", "layercam")


def _run_stage(app: typer.Typer, args: list[str]) -> float:
    console.rule(style="dim")
    console.print(f"$ iconolens {shlex.join(args)}", style="bold", soft_wrap=True, markup=False)
    start = time.perf_counter()
    app(args=args, standalone_mode=False, prog_name="iconolens")
    return time.perf_counter() - start


def _overlay_images(run: Path, per_class: int) -> dict[str, list[str]]:
    """A few test images per class, chosen in id order so the demo's pictures are stable."""
    from iconolens.data.dataset_json import load_dataset_json

    dataset = load_dataset_json(run / "dataset.json").subset("test")
    chosen: dict[str, list[str]] = {}
    for sample in sorted(dataset.samples, key=lambda s: s.id):
        for label in sample.labels:
            if len(chosen.setdefault(label, [])) < per_class:
                chosen[label].append(sample.id)
    return chosen


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run folder for everything the demo writes."),
    images: int = typer.Option(600, "--images", min=40, help="Size of the synthetic collection."),
    max_figures: int = typer.Option(
        1, "--max-figures", min=1, max=3,
        help="Most saints per painting (1: one saint each, a single-label task like ArtDL's; 3: groups).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the collection, the split and the training."),
    backbone: str = typer.Option("mobilenet_v2", "--backbone", help="Classifier backbone (ImageNet weights ship offline)."),
    mode: str = typer.Option(
        "fine-tune", "--mode",
        help="Training mode: fine-tune (the last feature stages), off-the-shelf (frozen ImageNet features) or scratch.",
    ),
    frozen_fraction: float = typer.Option(
        0.75, "--frozen-fraction", min=0.0, max=1.0, help="Fine-tune: fraction of early feature stages kept frozen.",
    ),
    epochs: int = typer.Option(25, "--epochs", min=1, help="Most training epochs (early stopping may end sooner)."),
    lr: float = typer.Option(0.002, "--lr", min=0.0, help="Learning rate of the training."),
    image_size: int = typer.Option(160, "--image-size", min=96, help="Side of the paintings and of the model's input, in pixels."),
    explain_size: int = typer.Option(
        512, "--explain-size", min=64,
        help="Input size the maps are computed at: a stride-32 network gives 16 x 16 maps at 512 px.",
    ),
    box_method: str = typer.Option(
        "gradcampp", "--box-method", help="Method whose maps seed the GrabCut figure boxes and give the overlays' boxes.",
    ),
    per_class: int = typer.Option(2, "--overlays-per-class", min=0, help="Overlay pictures per class."),
) -> None:
    """Run the whole chain on the embedded synthetic collection and print where the outputs are.

    synth -> split -> train -> explain (CAM methods) -> evaluate -> boxes -> overlays, an HTML report and the
    interactive viewer.
    """
    from iconolens.cli import app
    from iconolens.report.html import write_run_report

    run = out
    collection = run / "collection"
    methods = ",".join(CAM_METHODS)
    timings: dict[str, float] = {}
    total = time.perf_counter()
    timings["synth"] = _run_stage(app, ["data", "synth", "--out", str(collection), "--images", str(images),
                                        "--seed", str(seed), "--size", str(image_size),
                                        "--max-figures", str(max_figures)])
    timings["split"] = _run_stage(app, ["data", "split", str(collection / "annotations.json"), "--out", str(run),
                                        "--seed", str(seed)])
    _run_stage(app, ["data", "stats", str(run / "dataset.json")])
    # Fine-tuning only the last stages (those at stride 32) makes them detect the attributes; the frozen
    # stages run once per image, not once per epoch, so this takes about a minute on a CPU. One thread:
    # these small stages gain little from a second one, and with another program busy on one of two
    # cores, two threads trained over ten times slower than one.
    timings["train"] = _run_stage(app, ["train", "--run", str(run), "--backbone", backbone, "--mode", mode,
                                        "--frozen-fraction", str(frozen_fraction), "--lr", str(lr),
                                        "--epochs", str(epochs), "--patience", "5",
                                        "--image-size", str(image_size), "--seed", str(seed), "--threads", "1"])
    _run_stage(app, ["evaluate-classifier", "--run", str(run), "--split", "test"])
    # At the training size the last stage's maps are 5 x 5 cells, each wider than an attribute; explained
    # at a larger input the same network gives maps fine enough to separate the two attributes of a saint.
    timings["explain"] = _run_stage(app, ["explain", "--run", str(run), "--methods", methods, "--split", "test",
                                          "--image-size", str(explain_size)])
    timings["evaluate"] = _run_stage(app, ["evaluate", "--run", str(run), "--methods", methods,
                                           "--level", "attribute", "--split", "test"])
    start = time.perf_counter()
    for method in CAM_METHODS:
        # Few attribute maps of a small demo classifier pass the thesis's quality gate, and at its fixed
        # threshold their foreground spans most of the image; so attribute boxes come from every map with a
        # per-map percentile threshold (Bae et al. 2020). Figure boxes follow the thesis's recipe.
        _run_stage(app, ["boxes", "--run", str(run), "--method", method, "--level", "attribute", "--no-gate",
                         "--percentile", "95", "--split", "test"])
        _run_stage(app, ["boxes", "--run", str(run), "--method", method, "--level", "figure", "--split", "test"])
    # The maps light up attributes, not the figures holding them: boxes snapped to the painted figure by
    # GrabCut, seeded with the maps, stand beside the thesis's figure boxes in the table.
    _run_stage(app, ["boxes", "--run", str(run), "--method", box_method, "--level", "figure", "--no-gate",
                     "--segments", "--split", "test"])
    timings["boxes"] = time.perf_counter() - start
    start = time.perf_counter()
    derived = run / "boxes" / f"{box_method}_attribute_pseudo_coco.json"
    for label, ids in _overlay_images(run, per_class).items():
        args = ["overlay", "--run", str(run), "--method", box_method, "--images", ",".join(ids),
                "--classes", label, "--out", str(run / "report" / "overlays")]
        if derived.exists():
            args += ["--derived", str(derived)]
        _run_stage(app, args)
    timings["overlays"] = time.perf_counter() - start
    start = time.perf_counter()
    page = write_run_report(run, title="iconolens demo: synthetic iconography")
    timings["report"] = time.perf_counter() - start
    title = "iconolens demo: synthetic iconography"
    timings["viewer"] = _run_stage(app, ["view", "--run", str(run), "--split", "test", "--title", title])
    timings["total"] = time.perf_counter() - total

    console.rule("[bold]done", align="left")
    console.print("stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    console.print(f"collection:      {collection}")
    console.print(f"model:           {run / 'model'}")
    console.print(f"maps:            {run / 'maps'}")
    console.print(f"metrics:         {run / 'metrics'}")
    console.print(f"derived boxes:   {run / 'boxes'}")
    console.print(f"report (open):   file://{page.resolve()}")
    console.print(f"viewer (open):   file://{(run / 'viewer' / 'index.html').resolve()}")


def register(app: typer.Typer) -> None:
    """Add ``iconolens demo`` to the main app."""
    app.command(name="demo")(demo)
