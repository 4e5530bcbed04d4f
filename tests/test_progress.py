"""Progress in a log: a line every few percent of a long loop, nothing for a quick one."""

from __future__ import annotations

import iconolens.progress as progress_module
from iconolens.progress import progress


class _Clock:
    """Each reading is ``step`` seconds after the previous one."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_slow_loop_logs_every_five_percent(monkeypatch, capsys):
    monkeypatch.setattr(progress_module.time, "monotonic", _Clock(40.0))  # every item takes 40 s
    assert list(progress(range(100), "training")) == list(range(100))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 20  # at 5, 10, ..., 100 of 100
    assert lines[0].startswith("training: 5/100 (5%), 3:20 spent, about 1:03:20 left")
    assert lines[-1].startswith("training: 100/100 (100%)")


def test_a_quick_loop_stays_silent(monkeypatch, capsys):
    monkeypatch.setattr(progress_module.time, "monotonic", _Clock(0.01))
    assert sum(progress(range(1000), "quick")) == sum(range(1000))
    assert capsys.readouterr().err == ""
