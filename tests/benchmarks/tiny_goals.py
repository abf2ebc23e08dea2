"""A tiny goal for tests/benchmarks/test_check.py: the check's whole machinery in a second.

The call and its anchor are the same short sleep, so the call is at most 2x its anchor unless a
slowdown is planted (``--plant sleep=MS`` wraps the call, as it wraps every public call).
"""

from __future__ import annotations

import time

from benchmarks.check import Context, Measured, ratio
from benchmarks.goals import Goal

NAP_S = 0.005

GOALS = [Goal("tiny-nap", "tiny", "time.sleep(0.005)", "time.sleep(0.005)", max_ratio=2.0,
              source="tests/benchmarks/test_check.py")]


def group_tiny(ctx: Context) -> list[Measured]:
    def nap() -> None:
        time.sleep(NAP_S)

    return [ratio("tiny-nap", ctx.turns([ctx.subject(nap), nap], repeats=5), 0, 1)]


GROUPS = {"tiny": group_tiny}
