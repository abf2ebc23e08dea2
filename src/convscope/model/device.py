"""Where a module lives: one answer for every caller (methods, synthesis, the fast path)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import BadArgument


def device_of(module: nn.Module) -> torch.device:
    """The device of the module's first parameter, else of its first buffer, else the CPU
    (a parameter-free module such as ``nn.Identity`` runs wherever its input is)."""
    tensor: torch.Tensor | None = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def pick_device(name: str, option: str = "--device") -> torch.device:
    """``"auto"`` (CUDA when there is one, else the CPU) or a device name, checked: the one
    choice of the CLI, ``convscope serve`` and ``show_app``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise BadArgument(f"{option} {name!r} is not a device; use cpu, cuda or auto") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadArgument(f"{option} {name!r}: CUDA is not available here; use cpu or auto")
    return device
