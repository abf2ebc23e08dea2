"""A goal for tests/benchmarks/test_check.py that ``--plant no-frozen`` must turn red, in seconds.

Not a timing: the row's value is 0 when a forward-only method's fast path ran on the frozen
graph in the check's fresh child process and 1 when it did not, against a bound of 0.5. The
planted loss of issue 23 (the frozen graph silently dropped) then shows as it would in the
occlusion group's rows, without their minutes of timing.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.check import Context, Measured
from benchmarks.goals import Goal

GOALS = [Goal("tiny-frozen", "tiny-frozen", "explain(digits_cnn, x, 'occlusion', window=4, stride=2)",
              "its fast path's frozen graph (0: frozen, 1: eager)", max_ratio=0.5,
              source="tests/benchmarks/test_check.py")]


def group_tiny_frozen(ctx: Context) -> list[Measured]:
    from convscope import explain
    from convscope.model import FastForward, load_model

    made: list[FastForward] = []
    init = FastForward.__init__

    def recording(self: FastForward, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    FastForward.__init__ = recording  # type: ignore[method-assign]  (this child process only)
    digits = load_model("digits_cnn")
    x = digits.normalize(torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    explain(digits, x, "occlusion", window=4, stride=2)  # 169 windows: enough rows to freeze
    value = 0.0 if made and all(f.frozen is not None for f in made) else 1.0
    return [Measured("tiny-frozen", value, None, None, value, value, value)]


GROUPS = {"tiny-frozen": group_tiny_frozen}
