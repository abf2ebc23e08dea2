"""Stop a running computation at its next torch operation, without touching the model.

A web job may be cancelled while the model's forward is running (a 30-second occlusion on a
large image). Progress callbacks only fire between chunks, so :func:`cancellable` also installs a
thread-local ``TorchFunctionMode`` that checks a flag before each torch function call and raises
:class:`Cancelled` once it is set. The exception unwinds through the method's own ``finally``
blocks (hooks removed, flags restored: :mod:`convscope.model.guard`), exactly as a failure would.
No hook or attribute is added to the model, and the mode lives only on the thread that runs the
job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch.overrides import TorchFunctionMode


class Cancelled(Exception):
    """The computation was cancelled on request (not a user error: the job system catches it)."""


class _CheckCancel(TorchFunctionMode):
    def __init__(self, event: threading.Event) -> None:
        super().__init__()
        self.event = event

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        if self.event.is_set():
            raise Cancelled("cancelled")
        return func(*args, **(kwargs or {}))


@contextmanager
def cancellable(event: threading.Event) -> Iterator[None]:
    """Run the block so that setting ``event`` stops it at its next torch call."""
    if event.is_set():
        raise Cancelled("cancelled before it started")
    with _CheckCancel(event):
        yield
