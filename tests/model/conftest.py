"""Tiny seeded networks for the model-access tests: one architecture, every rectifier spelling.

``SpelledNet(spelling)`` is conv-act-conv-(+residual)-act-conv-act-GAP-linear where "act" is
written as a module, a function, an in-place call or a tensor method. With the same seed every
spelling has the same weights, so any backward rule must give bit-identical input gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

Act = Callable[[Tensor], Tensor]


def _relu_method_inplace(t: Tensor) -> Tensor:
    t.relu_()  # result deliberately ignored: the tensor itself must hold it
    return t


def _torch_relu_inplace(t: Tensor) -> Tensor:
    torch.relu_(t)
    return t


RELU_SPELLINGS: dict[str, Callable[[], Act]] = {
    "nn.ReLU": lambda: nn.ReLU(),
    "nn.ReLU(inplace)": lambda: nn.ReLU(inplace=True),
    "F.relu": lambda: F.relu,
    "F.relu(inplace)": lambda: lambda t: F.relu(t, inplace=True),
    "torch.relu": lambda: torch.relu,
    "torch.relu_": lambda: _torch_relu_inplace,
    "Tensor.relu": lambda: Tensor.relu,
    "Tensor.relu_": lambda: _relu_method_inplace,
    "clamp(min=0)": lambda: lambda t: t.clamp(min=0),
}

RELU6_SPELLINGS: dict[str, Callable[[], Act]] = {
    "nn.ReLU6": lambda: nn.ReLU6(),
    "nn.ReLU6(inplace)": lambda: nn.ReLU6(inplace=True),
    "F.relu6": lambda: F.relu6,
    "F.hardtanh(0,6)": lambda: lambda t: F.hardtanh(t, 0.0, 6.0),
    "clamp(0,6)": lambda: lambda t: torch.clamp(t, 0, 6),
}


class SpelledNet(nn.Module):
    """conv1-act-conv2(+skip)-act-conv3-act-GAP-fc, the activation spelled as asked."""

    def __init__(self, make_act: Callable[[], Act], channels: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.fc = nn.Linear(channels, classes)
        acts = [make_act() for _ in range(3)]
        if isinstance(acts[0], nn.Module):
            self.act1, self.act2, self.act3 = acts  # registered as submodules
        else:
            self._acts = acts

    def _act(self, i: int) -> Act:
        return getattr(self, f"act{i}") if hasattr(self, "act1") else self._acts[i - 1]

    def forward(self, x: Tensor) -> Tensor:
        h = self._act(1)(self.conv1(x))
        h = self._act(2)(self.conv2(h) + h)
        h = self._act(3)(self.conv3(h))
        return self.fc(h.mean((2, 3)))


def spelled_net(spelling: str, seed: int = 0, scale: float = 1.0) -> SpelledNet:
    """The seeded network for ``spelling`` (a key of either spelling table), weights times ``scale``."""
    make = {**RELU_SPELLINGS, **RELU6_SPELLINGS}[spelling]
    torch.manual_seed(seed)
    net = SpelledNet(make)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    return net.eval()


@pytest.fixture
def image() -> Tensor:
    """A seeded (2, 3, 8, 8) input batch."""
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def make_net() -> Callable[..., SpelledNet]:
    """``make_net(spelling, seed=0, scale=1.0)``; a fixture so test files need not import conftest."""
    return spelled_net


@pytest.fixture(params=list(RELU_SPELLINGS))
def relu_spelling(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=list(RELU6_SPELLINGS))
def relu6_spelling(request: pytest.FixtureRequest) -> str:
    return request.param
