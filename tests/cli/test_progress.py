"""Outside a terminal long runs still say how far they are: plain lines on stderr."""

from __future__ import annotations

import io

import pytest

from convscope.cli import progress as progress_module
from convscope.cli.progress import progress_bar


class _Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_periodic_lines_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _Log()
    monkeypatch.setattr("sys.stderr", log)
    clock = iter([0.0, 5.0, 12.0, 13.0, 25.0])  # the start, then one reading per update
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    with progress_bar(40, "report", interval=10.0) as progress:
        for done in (10, 20, 30, 35):
            progress(done, 40)
    lines = log.getvalue().splitlines()
    assert lines == ["report: 20/40 (50%), 12s elapsed, about 12s left",  # 5s: too soon after the start
                     "report: 35/40 (88%), 25s elapsed, about 4s left"]  # 13s: too soon after 12s


def test_a_short_run_stays_quiet_and_the_last_state_ends_a_long_one(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _Log()
    monkeypatch.setattr("sys.stderr", log)
    with progress_bar(3, "quick", interval=60.0) as progress:
        for done in (1, 2, 3):
            progress(done, 3)
    assert log.getvalue() == ""
    with progress_bar(3, "slow", interval=0.0) as progress:
        progress(1, 3)
        progress(3, 3)
    lines = log.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["slow: 1/3 (33%)", "slow: 3/3 (100%)"]
    assert "left" in lines[0] and "left" not in lines[1]
