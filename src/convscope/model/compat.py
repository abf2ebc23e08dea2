"""The private torch APIs convscope relies on, named once so a torch release that drops them
breaks here, in one place that ``tests/model/test_compat.py`` checks, instead of deep inside a
backward pass.

* ``torch._C.DisableTorchFunction``: a context in which ``__torch_function__`` modes are not
  consulted; the backward rules of :mod:`.rules`, :mod:`.receptive` and LRP run their own tensor
  ops under it so a still-active mode does not route them back into itself.
* ``torch.overrides._get_current_function_mode_stack``: the active ``TorchFunctionMode`` objects
  of this thread, innermost last; :func:`.rules.active_rule` reads it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.overrides


def torch_function_disabled() -> AbstractContextManager[Any]:
    """A context in which no ``__torch_function__`` override or mode is consulted."""
    return torch._C.DisableTorchFunction()


def function_mode_stack() -> list[Any]:
    """The thread's active ``__torch_function__`` modes, outermost first."""
    return list(torch.overrides._get_current_function_mode_stack())


PRIVATE_APIS = ("torch._C.DisableTorchFunction", "torch.overrides._get_current_function_mode_stack")
"""What this module wraps; the compat test resolves each name against the installed torch."""
