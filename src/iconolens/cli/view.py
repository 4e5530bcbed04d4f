"""``iconolens view``: build the interactive viewer of a run (or a detector report) and optionally serve it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iconolens.cli.console import CommandConsole

console = CommandConsole(highlight=False)


def view(
    run: Path = typer.Option(..., "--run", help=(
        "A run folder (dataset.json, maps, boxes), a failure report of `iconolens detect eval --failures`, "
        "or the output folder of `iconolens detect explain`."
    )),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the site (default RUN/viewer).",
                                       file_okay=False),
    split: Optional[str] = typer.Option(None, "--split", help="Show only this split's images (e.g. test)."),
    title: Optional[str] = typer.Option(None, "--title", help="Title of the pages."),
    serve: bool = typer.Option(False, "--serve", help="Then serve the site on 127.0.0.1 until interrupted."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port for --serve (0: any free port)."),
) -> None:
    """Write a self-contained static site (RUN/viewer/index.html, opens from file://): a gallery to filter and
    sort, and per image its maps of every method and class with opacity and threshold sliders, the boxes
    derived live at that threshold, expert and stored boxes, probabilities and measures."""
    from iconolens.viewer.build import build_viewer

    page = build_viewer(run, out=out, split=split, title=title)
    console.print(f"viewer written: file://{page.resolve()}")
    if serve:
        from iconolens.viewer.serve import viewer_server

        server = viewer_server(page.parent, port)
        host, bound = server.server_address[:2]
        console.print(f"serving {page.parent} at http://{host}:{bound}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


def register(app: typer.Typer) -> None:
    """Add ``iconolens view`` to the main app."""
    app.command(name="view")(view)
