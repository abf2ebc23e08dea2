"""Every :class:`FastForward` a test's calls make, to read what the fast path chose (frozen graph,
folding) and what it dropped and why; shared by tests/model and tests/zoo."""

from __future__ import annotations

from typing import Any

import pytest

from convscope.model import FastForward


def recorded_fast_forwards(monkeypatch: pytest.MonkeyPatch) -> list[FastForward]:
    """Every FastForward made from now on in the test."""
    made: list[FastForward] = []
    init = FastForward.__init__

    def recording(self: FastForward, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(FastForward, "__init__", recording)
    return made
