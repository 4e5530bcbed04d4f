"""Commands of the `iconolens` program (filled in by its area)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
