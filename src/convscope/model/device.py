"""Where a module lives: one answer for every caller (methods, synthesis, the fast path)."""

from __future__ import annotations

import torch
from torch import nn


def device_of(module: nn.Module) -> torch.device:
    """The device of the module's first parameter, else of its first buffer, else the CPU
    (a parameter-free module such as ``nn.Identity`` runs wherever its input is)."""
    tensor: torch.Tensor | None = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")
