"""Fixtures shared across the suite: the embedded model (loaded once) and seeded tiny models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.methods.features import Context
from convscope.model import Model, load_model


@pytest.fixture(scope="session")
def lite0() -> Model:
    """The embedded EfficientNet-Lite0 with ImageNet weights; tests must not change it."""
    torch.set_num_threads(2)
    return load_model("efficientnet_lite0")


class TinyCNN(nn.Module):
    """conv-relu-conv-relu -> GAP -> linear: small, seeded, CAM-shaped."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


@pytest.fixture
def tiny() -> Model:
    torch.manual_seed(0)
    from convscope.model import Preprocess

    return Model(TinyCNN().eval(), preprocess=Preprocess(input_size=(16, 16)),
                 labels=["zero", "one", "two", "three"], name="tiny")


@pytest.fixture
def one_thread():  # type: ignore[no-untyped-def]
    """One torch thread for the test: for tiny nets on a busy 2-core machine a second thread
    costs more than it gives. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ctx() -> Context:
    """What an objective reads, seeded: images, two layers' activations, logits and class names
    (the objective tests of the library and of the CLI's spelling share it)."""
    g = torch.Generator().manual_seed(0)
    acts = {"a": torch.randn(3, 5, 4, 6, generator=g), "b": torch.randn(3, 2, 3, 3, generator=g)}
    return Context(torch.rand(3, 3, 8, 8, generator=g), acts, torch.randn(3, 4, generator=g),
                   ["zero", "one", "two", "three"])
