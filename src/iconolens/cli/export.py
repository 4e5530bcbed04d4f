"""``iconolens export iiif``: a run as a IIIF manifest with its boxes and saliency maps, for museum viewers."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iconolens.cli.console import CommandConsole

console = CommandConsole(highlight=False, soft_wrap=True)
export_app = typer.Typer(help="Write a run in formats other tools read.", no_args_is_help=True)


def iiif(
    run: Path = typer.Option(..., "--run", help="Run directory (dataset.json, maps/, boxes/)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Folder for manifest.json and its files (default: RUN/iiif)."
    ),
    base_url: Optional[str] = typer.Option(None, "--base-url", help=(
        "URL the folder will be published at; every id is <URL>/<path in the folder> (default: the folder's "
        "file URI, for viewing on this machine)."
    )),
    method: Optional[list[str]] = typer.Option(None, "--method", help=(
        "Saliency method whose maps become overlays (repeat or comma-separate); default every method in the run."
    )),
    max_images: Optional[int] = typer.Option(None, "--max-images", min=1, help="Export only the first N samples."),
    split: Optional[str] = typer.Option(None, "--split", help="Export only this split's samples (train, val, test)."),
    all_classes: bool = typer.Option(False, "--all-classes", help=(
        "Overlay every class's map, not only the classes each image is labelled with."
    )),
    copy_images: bool = typer.Option(True, "--copy-images/--link-images", help=(
        "Copy the images into DIR/images/ (publishable), or paint them from where they lie (file URIs)."
    )),
    alpha: float = typer.Option(0.6, "--alpha", min=0.0, max=1.0, help="Opacity of the hottest overlay pixels."),
    colormap: str = typer.Option("jet", "--colormap", help="Matplotlib colour map of the overlays."),
) -> None:
    """Write a IIIF Presentation 3 manifest of the run: one canvas per sample, the run's boxes and detections as
    annotation pages, and each explained class's saliency map as a transparent overlay image."""
    from iconolens.data.iiif_export import export_iiif

    methods = [m.strip() for item in method for m in item.split(",") if m.strip()] if method else None
    result = export_iiif(run, out, base_url=base_url, methods=methods, max_images=max_images, split=split,
                         all_classes=all_classes, copy_images=copy_images, max_alpha=alpha, colormap=colormap)
    for sample_id, reason in result.skipped:
        console.print(f"skipped {sample_id}: {reason}")
    console.print(f"{result.canvases} canvases, {result.box_pages} box pages and {result.overlays} overlays: "
                  f"{result.manifest}")


def register(app: typer.Typer) -> None:
    """Add `iconolens export iiif`."""
    export_app.command("iiif", help=" ".join((iiif.__doc__ or "").split()))(iiif)
    app.add_typer(export_app, name="export")
