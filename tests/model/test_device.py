"""device_of: one answer to "where does this module live" for every caller."""

from __future__ import annotations

import torch
from torch import nn

from convscope.model.device import device_of


class BufferOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", torch.zeros(2, device="meta"))


def test_parameters_then_buffers_then_the_cpu() -> None:
    assert device_of(nn.Linear(2, 2, device="meta")) == torch.device("meta")
    assert device_of(BufferOnly()) == torch.device("meta")
    assert device_of(nn.Identity()) == torch.device("cpu")
