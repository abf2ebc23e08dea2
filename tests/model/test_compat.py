"""The private torch APIs behind model/compat.py exist and still do what convscope relies on.

If a torch release removes or changes one of them, this test names it, so the fix is one edit
in src/convscope/model/compat.py instead of a puzzling failure inside a backward rule.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from torch.overrides import TorchFunctionMode

from convscope.model.compat import PRIVATE_APIS, function_mode_stack, torch_function_disabled


@pytest.mark.parametrize("dotted", PRIVATE_APIS)
def test_the_private_api_exists_in_this_torch(dotted: str) -> None:
    module_name, _, attr = dotted.rpartition(".")
    module = importlib.import_module(module_name)
    assert hasattr(module, attr), (
        f"torch {torch.__version__} has no {dotted}; convscope's backward rules need it: "
        f"replace it in src/convscope/model/compat.py")


class Counting(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        return func(*args, **(kwargs or {}))


def test_modes_are_listed_and_can_be_switched_off() -> None:
    x = torch.ones(3)
    assert all(not isinstance(m, Counting) for m in function_mode_stack())
    with Counting() as outer, Counting() as inner:
        stack = [m for m in function_mode_stack() if isinstance(m, Counting)]
        assert stack == [outer, inner], f"{PRIVATE_APIS[1]} no longer lists modes outermost first"
        torch.add(x, 1)
        seen = inner.calls
        assert seen >= 1
        with torch_function_disabled():
            torch.add(x, 1)
        assert inner.calls == seen, f"{PRIVATE_APIS[0]} no longer keeps modes from seeing calls"
    assert all(not isinstance(m, Counting) for m in function_mode_stack())
