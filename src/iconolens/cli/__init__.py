"""The ``iconolens`` command: a thin Typer app that parses, calls the library and prints.

Bad input ends with one sentence on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from iconolens.cli.console import CommandConsole
from iconolens.errors import IconolensError

app = typer.Typer(
    name="iconolens",
    help=(
        "Explainable computer vision for artworks: build collections, train classifiers, compute "
        "saliency maps (CAM, Grad-CAM, Grad-CAM++, Smooth Grad-CAM++, VisualBackProp, RISE, D-RISE), "
        "measure them against expert boxes and derive boxes from them."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

stderr = CommandConsole(stderr=True, highlight=False, soft_wrap=True)


def _register_commands() -> None:
    from iconolens.cli import data, demo, detect, evaluate, explain, export, mil, sanity, train, view

    for module in (data, train, explain, evaluate, sanity, detect, demo, mil, export, view):
        module.register(app)


_register_commands()


def main() -> None:
    """Entry point: run the app, turning input errors into one line and a non-zero exit."""
    try:
        app()
    except IconolensError as exc:
        stderr.print(f"[bold red]error:[/] {exc}", markup=True)
        sys.exit(2)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        stderr.print(f"[bold red]error:[/] {where}{exc.strerror or exc}", markup=True)
        sys.exit(2)
    except KeyboardInterrupt:
        stderr.print("interrupted; finished files are kept and a re-run resumes from them")
        sys.exit(130)
