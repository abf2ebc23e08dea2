"""A cancel unwinds through the guards' ``finally`` blocks, whose torch calls must still run:
otherwise a cancelled web job leaves the model frozen (``requires_grad`` off) for good."""

from __future__ import annotations

import threading

import pytest
import torch

from convscope.model import Model, guarded
from convscope.model.cancel import Cancelled, cancellable
from tests.model_safety import assert_unharmed, snapshot


@pytest.mark.parametrize("where", ["mid_forward", "progress_callback"])
def test_a_cancel_restores_flags_and_parameters(tiny: Model, where: str) -> None:
    tiny.train()  # a model mid-fine-tuning: train mode, one tensor frozen by its user
    next(tiny.parameters()).requires_grad_(False)
    before = snapshot(tiny)
    event = threading.Event()
    with pytest.raises(Cancelled), cancellable(event), guarded(tiny):
        tiny(torch.rand(1, 3, 16, 16))
        event.set()
        if where == "progress_callback":  # what a job's progress() raises after a cancel
            raise Cancelled("cancelled")
        tiny(torch.rand(1, 3, 16, 16))  # the mode raises at the first torch call
    assert_unharmed(tiny, before)


def test_the_next_call_after_an_exception_was_handled_still_stops() -> None:
    event = threading.Event()
    calls = []
    with pytest.raises(Cancelled), cancellable(event):
        event.set()
        try:
            raise ValueError("a method's own fallback path")
        except ValueError:
            calls.append(torch.zeros(1) + 1)  # while an exception is handled: quiet
        calls.append(torch.zeros(1) + 2)
    assert len(calls) == 1
