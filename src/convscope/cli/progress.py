"""Progress bars: the library reports ``progress(done, total)``; only the CLI draws bars."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

from ..types import ProgressFn


@contextmanager
def progress_bar(total: int, description: str) -> Iterator[ProgressFn]:
    """A tqdm bar on stderr (hidden when stderr is not a terminal) fed by a progress callback."""
    bar = tqdm(total=total, desc=description, unit="step", file=sys.stderr,
               disable=not sys.stderr.isatty(), leave=False)

    def update(done: int, total_now: int) -> None:
        if total_now != bar.total:  # some work learns its total only once it starts
            bar.total = total_now
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()
