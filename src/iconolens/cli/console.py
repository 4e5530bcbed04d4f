"""The rich console every command prints through.

On a terminal, rich fits tables and text to the terminal's width. Anywhere else (a log file, a pipe) it would
fit them to 80 columns, or to the width of the terminal the command was started from, and a wider table would
have its cells wrapped over several lines, breaking its columns; there nothing is fitted, so every row of a
table stays on one line.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleDimensions

#: Width of output that is not a terminal: wider than any table or line a command prints.
UNFITTED_WIDTH = 100_000


def writes_to_terminal(console: Console) -> bool:
    """Whether ``console``'s stream is a terminal (rich's own ``is_terminal`` also says yes to FORCE_COLOR)."""
    isatty = getattr(console.file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class CommandConsole(Console):
    """A rich ``Console`` that fits its output to the terminal only when it writes to one.

    The stream is looked at on every print, so a console made at import time follows ``sys.stdout`` when it
    is swapped (as by a test runner). A width given explicitly is kept.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._fixed_width = kwargs.get("width") is not None
        super().__init__(**kwargs)

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._fixed_width or writes_to_terminal(self):
            return size
        return ConsoleDimensions(UNFITTED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]
        self._fixed_width = True
