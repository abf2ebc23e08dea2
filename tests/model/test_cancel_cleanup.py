"""A cancel unwinds through the guards' ``finally`` blocks, whose torch calls must still run:
otherwise a cancelled web job leaves the model frozen (``requires_grad`` off) for good. Both
checks (per torch call, per module call in the job's thread) raise once and are gone after the block."""

from __future__ import annotations

import threading

import pytest
import torch

from convscope.model import Model, guarded
from convscope.model.cancel import Cancelled, cancellable
from tests.model_safety import assert_unharmed, snapshot

PER = pytest.mark.parametrize("per_module", [False, True], ids=["per-torch-call", "per-module"])


@PER
@pytest.mark.parametrize("where", ["mid_forward", "progress_callback"])
def test_a_cancel_restores_flags_and_parameters(tiny: Model, where: str, per_module: bool) -> None:
    tiny.train()  # a model mid-fine-tuning: train mode, one tensor frozen by its user
    next(tiny.parameters()).requires_grad_(False)
    before = snapshot(tiny)
    event = threading.Event()
    with pytest.raises(Cancelled), cancellable(event, per_module=per_module), guarded(tiny):
        tiny(torch.rand(1, 3, 16, 16))
        event.set()
        if where == "progress_callback":  # what a job's progress() raises after a cancel
            raise Cancelled("cancelled")
        tiny(torch.rand(1, 3, 16, 16))  # the check raises at the first torch (module) call
    assert_unharmed(tiny, before)


@PER
def test_the_next_call_after_an_exception_was_handled_still_stops(per_module: bool) -> None:
    event = threading.Event()
    layer = torch.nn.Identity()
    calls = []
    with pytest.raises(Cancelled), cancellable(event, per_module=per_module):
        event.set()
        try:
            raise ValueError("a method's own fallback path")
        except ValueError:
            calls.append(layer(torch.zeros(1) + 1))  # while an exception is handled: quiet
        calls.append(layer(torch.zeros(1) + 2))
    assert len(calls) == 1


def test_per_module_checks_only_module_calls_and_the_end_of_the_block() -> None:
    event = threading.Event()
    done = []
    with pytest.raises(Cancelled), cancellable(event, per_module=True):
        torch.nn.Identity()(torch.zeros(1))
        event.set()
        done.append(torch.zeros(1) + 1)  # plain torch calls run: only a module call checks
    assert len(done) == 1
    assert not torch.nn.modules.module._global_forward_pre_hooks  # the check is gone


def test_the_per_module_check_passes_other_threads_by() -> None:
    event = threading.Event()
    outputs = []
    with cancellable(event, per_module=True):
        event.set()
        other = threading.Thread(target=lambda: outputs.append(torch.nn.Identity()(torch.ones(1))))
        other.start()
        other.join()
        event.clear()
    assert len(outputs) == 1
