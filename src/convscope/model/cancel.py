"""Stop a running computation at its next module call, without touching the model.

A web job may be cancelled while the model's forward is running (a 30-second occlusion on a
large image). Progress callbacks only fire between chunks, so :func:`cancellable` also registers
a global module forward pre-hook (:func:`~convscope.model.guard.own_hook`: it acts only in the
thread that runs the job) that raises :class:`Cancelled` at the next module call once a flag is
set, and the block raises it at its end if no module call came after the cancel. The exception
unwinds through the method's own ``finally`` blocks (hooks removed, flags restored:
:mod:`convscope.model.guard`), exactly as a failure would. Nothing is added to the model itself,
and the global hook is removed when the block ends.

A module hook, not a ``TorchFunctionMode`` that checks before every torch call: the mode cost a
Python call per torch function (1800 for one Grad-CAM of Lite0, a sixth of its time), the hook
one per module call (300). A cancel still lands inside a forward, at the next layer; only a
model whose whole forward is one module of functional code runs it to its end.

Two rules make that unwinding complete (the cancelled-job cases of ``tests/test_contract.py``):
the hook raises ONCE, and never while an exception unwinds (a job's progress callback raises
:class:`Cancelled` itself, before the hook has fired), so the ``finally`` blocks that restore the
model (some run the model: a fast path's eager fallback) run to the end; and :class:`Cancelled`
is a ``BaseException``, so the ``except Exception`` of a method (which turns a model's error into
``MethodFailed``) or of the fast path (which falls back to the eager copy) lets it through.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook

from .compat import function_mode_stack
from .guard import own_hook


class Cancelled(BaseException):
    """The computation was cancelled on request (not a user error: the job system catches it).
    Not an ``Exception``, so that no ``except Exception`` on the way out takes it for a failure."""


class _CancelCheck:
    """The check before each module call of the job's thread: raise once the event is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.fired = False

    def __call__(self, module: nn.Module, args: Any) -> None:
        if self.event.is_set() and not self.fired and sys.exc_info()[1] is None:
            self.fired = True  # once: the cleanup on the way out may run the model too
            raise Cancelled("cancelled")


@contextmanager
def cancellable(event: threading.Event) -> Iterator[None]:
    """Run the block so that setting ``event`` stops it at its next module call (or at its end)."""
    if event.is_set():
        raise Cancelled("cancelled before it started")
    check = _CancelCheck(event)
    handle = register_module_forward_pre_hook(own_hook(check))
    try:
        yield
    finally:
        handle.remove()
    if event.is_set() and not check.fired:  # cancelled after the last module call
        raise Cancelled("cancelled")


def at_rest(module: nn.Module) -> bool:
    """Whether a short call may run on ``module`` now, between two steps of a cancellable job on
    this thread: no torch-function mode is active, and no submodule has a hook or an
    instance-level ``forward``. The call then sees the network as the user made it (the eval and
    frozen flags a job sets are those the call sets too); a job that has hooks or a rule mode in
    place keeps the model until its end."""
    if function_mode_stack():
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                   or "forward" in vars(m) for m in module.modules())
