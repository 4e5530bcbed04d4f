"""Errors a person can act on: one sentence naming the file (when there is one) and the problem.

The CLI prints these without a traceback and exits non-zero; anything else is a bug.
"""

from __future__ import annotations

from pathlib import Path


class IconolensError(Exception):
    """Base of every error that is the user's input, not our bug."""


class BadInputError(IconolensError):
    """A file or value the user gave cannot be used."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class BadImageError(BadInputError):
    """An image file that cannot be decoded or is unsafe to decode."""


class BadAnnotationError(BadInputError):
    """An annotation (label, box, id) that contradicts itself or its image."""


class BadCheckpointError(BadInputError):
    """A file that is not an iconolens checkpoint, or one that does not fit the request."""
