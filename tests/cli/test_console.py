"""Tables printed to a log file or a pipe keep each row on one line; on a terminal they fit its width."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from rich.table import Table
from typer.testing import CliRunner

from iconolens.cli import app
from iconolens.cli.console import CommandConsole

LONG = "Saint Peter holding the keys of heaven, with a book and an inverted cross, in a landscape at dusk"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _table() -> Table:
    table = Table(title="wide")
    for name in ("class", "images", "share"):
        table.add_column(name)
    table.add_row(LONG, "12", "50.0%")
    return table


def test_data_stats_in_a_log_prints_each_row_of_a_wide_table_on_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # as when started from an 80-column terminal with output to a file
    for cls in (LONG, "Paul"):
        for i in range(2):
            (tmp_path / "collection" / cls).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8 + i, 6)).save(tmp_path / "collection" / cls / f"{i}.png")
    result = CliRunner().invoke(app, ["data", "stats", str(tmp_path / "collection")])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if LONG in line]
    assert len(rows) == 1 and len(rows[0]) > 80
    assert [cell.strip() for cell in rows[0].strip("│").split("│")] == [LONG, "2", "50.0%"]


def test_a_console_writing_to_a_file_does_not_wrap_and_one_on_a_terminal_does(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    log, terminal = io.StringIO(), _Terminal()
    CommandConsole(file=log, highlight=False).print(_table())
    CommandConsole(file=terminal, highlight=False, color_system=None).print(_table())
    assert sum(LONG in line for line in log.getvalue().splitlines()) == 1
    assert not any(LONG in line for line in terminal.getvalue().splitlines())  # wrapped at 80 columns
    assert max(len(line) for line in terminal.getvalue().splitlines()) <= 80


def test_an_explicit_width_is_kept_off_a_terminal() -> None:
    log = io.StringIO()
    CommandConsole(file=log, width=60, highlight=False).print(_table())
    assert max(len(line) for line in log.getvalue().splitlines()) <= 60
