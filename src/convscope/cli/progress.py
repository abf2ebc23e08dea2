"""Progress for long runs: the library reports ``progress(done, total)``; only the CLI shows it.

On a terminal that is a tqdm bar. Elsewhere (a log file, CI, a notebook's subprocess) a bar is
unreadable, but silence is worse: a 16-minute report looked hung. So there the same callback
prints one plain line to stderr every ``LINE_INTERVAL`` seconds, and one when such a run ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

from ..types import ProgressFn

LINE_INTERVAL = 10.0
"""Seconds between progress lines when stderr is not a terminal."""


@contextmanager
def progress_bar(total: int, description: str, *, interval: float | None = None) -> Iterator[ProgressFn]:
    """A progress callback: a tqdm bar on a terminal, periodic lines on any other stderr."""
    if not sys.stderr.isatty():
        lines = _Lines(total, description, LINE_INTERVAL if interval is None else interval)
        try:
            yield lines.update
        finally:
            lines.finish()
        return
    bar = tqdm(total=total, desc=description, unit="step", file=sys.stderr, leave=False)

    def update(done: int, total_now: int) -> None:
        if total_now != bar.total:  # some work learns its total only once it starts
            bar.total = total_now
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()


class _Lines:
    """``description: 120/400 (30%), 12s elapsed, about 28s left`` at most every ``interval`` s."""

    def __init__(self, total: int, description: str, interval: float) -> None:
        self.total, self.description, self.interval = total, description, interval
        self.start = self.last = time.monotonic()
        self.done = 0
        self.printed_done = -1

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._print(now)

    def finish(self) -> None:
        """The final state, for a run long enough to have printed a line (short runs stay quiet)."""
        if self.printed_done >= 0 and self.done != self.printed_done:
            self._print(time.monotonic())

    def _print(self, now: float) -> None:
        elapsed = now - self.start
        share = self.done / self.total if self.total else 0.0
        line = f"{self.description}: {self.done}/{self.total} ({share:.0%}), {elapsed:.0f}s elapsed"
        if 0 < share < 1:
            line += f", about {elapsed * (1 - share) / share:.0f}s left"
        print(line, file=sys.stderr, flush=True)
        self.printed_done = self.done
