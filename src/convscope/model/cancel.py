"""Stop a running computation at its next torch operation (or module call), without touching the model.

A web job may be cancelled while the model's forward is running (a 30-second occlusion on a
large image). Progress callbacks only fire between chunks, so :func:`cancellable` also installs a
thread-local ``TorchFunctionMode`` that checks a flag before each torch function call and raises
:class:`Cancelled` once it is set. That check costs a Python call per torch function: 1800 for one
Grad-CAM of Lite0, a sixth of its time. A job that only runs the model (the web's explain job)
asks for ``per_module=True`` instead: the same check as a global module forward pre-hook
(:func:`~convscope.model.guard.own_hook`: it acts only in the job's thread), 300 calls for that
Grad-CAM; the cancel still lands inside the forward, at the next layer. Either way the block
raises at its end if the flag was set after the last check. The exception unwinds through the
method's own ``finally`` blocks (hooks removed, flags restored: :mod:`convscope.model.guard`),
exactly as a failure would. Nothing is added to the model, the mode lives only on the thread that
runs the job, and the global hook is removed when the block ends.

Two rules make that unwinding complete (the cancelled-job cases of ``tests/test_contract.py``):
the check raises ONCE, and never while an exception unwinds (a job's progress callback raises
:class:`Cancelled` itself, before the check has fired), so the ``finally`` blocks that restore
the model with torch calls (``requires_grad_``) run to the end; and :class:`Cancelled` is a
``BaseException``, so the ``except Exception`` of a method (which turns a model's error into
``MethodFailed``) or of the fast path (which falls back to the eager copy) lets it through.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode

from .compat import function_mode_stack
from .guard import own_hook


class Cancelled(BaseException):
    """The computation was cancelled on request (not a user error: the job system catches it).
    Not an ``Exception``, so that no ``except Exception`` on the way out takes it for a failure."""


class _CheckCancel(TorchFunctionMode):
    """The check, before each torch call (as a mode) or each module call (as a module pre-hook)."""

    def __init__(self, event: threading.Event) -> None:
        super().__init__()
        self.event = event
        self.fired = False

    def check(self) -> None:
        if self.event.is_set() and not self.fired and sys.exc_info()[1] is None:
            self.fired = True  # once: the cleanup on the way out runs torch calls too
            raise Cancelled("cancelled")

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        self.check()
        return func(*args, **(kwargs or {}))

    def __call__(self, module: nn.Module, args: Any) -> None:
        self.check()


@contextmanager
def cancellable(event: threading.Event, *, per_module: bool = False) -> Iterator[None]:
    """Run the block so that setting ``event`` stops it at its next torch call (with
    ``per_module``: its next module call), or at its end."""
    if event.is_set():
        raise Cancelled("cancelled before it started")
    check = _CheckCancel(event)
    with ExitStack() as stack:
        if per_module:
            stack.callback(register_module_forward_pre_hook(own_hook(check)).remove)
        else:
            stack.enter_context(check)
        yield
    check.check()  # cancelled after the last check


def at_rest(module: nn.Module) -> bool:
    """Whether a short call may run on ``module`` now, between two steps of a cancellable job on
    this thread: no torch-function mode is active but the cancel checks, and no submodule has a
    hook or an instance-level ``forward``. The call then sees the network as the user made it
    (the eval and frozen flags a job sets are those the call sets too); a job that has hooks or a
    rule mode in place keeps the model until its end."""
    if any(not isinstance(mode, _CheckCancel) for mode in function_mode_stack()):
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                   or "forward" in vars(m) for m in module.modules())
