"""Progress of long loops: a rich bar on a terminal; when output goes to a log, a line every few percent.

A training or an explanation run of half an hour that prints nothing to its log looks hung; one line per
``LOG_STEP`` of the work (with the time spent and an estimate of the time left) says how far it is. Lines
are at least ``LOG_INTERVAL`` seconds apart, so quick loops (and loops nested in others) stay silent.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")
#: Share of the work between two log lines when output is not a terminal.
LOG_STEP = 0.05
#: Loops shorter than this print nothing to a log.
LOG_MIN_ITEMS = 20
#: Fewest seconds between two log lines.
LOG_INTERVAL = 30.0


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def _logged(items: Iterable[T], description: str, total: int) -> Iterator[T]:
    step = max(1, int(total * LOG_STEP))
    start = last = time.monotonic()
    printed = False
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if (done % step == 0 and now - last >= LOG_INTERVAL) or (done == total and printed):
            last, printed = now, True
            spent = now - start
            left = spent / done * (total - done)
            print(f"{description}: {done}/{total} ({100 * done / total:.0f}%), {_clock(spent)} spent, "
                  f"about {_clock(left)} left", file=sys.stderr, flush=True)


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items``, drawing a progress bar on stderr when it is a terminal, else logging every few percent."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not sys.stderr.isatty():
        if total is not None and total >= LOG_MIN_ITEMS:
            yield from _logged(items, description, total)
        else:
            yield from items
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
