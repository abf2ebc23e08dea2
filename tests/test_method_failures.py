"""No raw exception reaches a user: a failure inside the model's code during a method becomes a
one-line MethodFailed naming the method, model and input, chained to the original, and the model
is unharmed."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from convscope import MethodFailed, explain
from convscope.methods.registry import get_method
from convscope.model import Model, Preprocess
from tests.as_detections import CLASS_METHODS
from tests.model_safety import assert_unharmed, snapshot


class Breaks(nn.Module):
    """conv -> (raises from call ``fails_from`` on) -> conv -> GAP -> linear, in train mode."""

    def __init__(self, fails_from: int) -> None:
        super().__init__()
        self.conv1, self.conv2, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3), nn.Linear(4, 3)
        self.fails_from, self.calls = fails_from, 0

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x).relu()
        self.calls += 1
        if self.calls > self.fails_from:
            raise RuntimeError("shape '[-1, 400]' is invalid for input of size 512\nsecond line")
        return self.fc(self.conv2(h).relu().mean((2, 3)))


def model(fails_from: int) -> Model:
    torch.manual_seed(0)
    return Model(Breaks(fails_from).train(), preprocess=Preprocess(input_size=(8, 8)), name="breaks")


def test_a_forward_that_always_raises_gives_one_line_naming_the_model() -> None:
    broken = model(0)
    before = snapshot(broken)
    with pytest.raises(MethodFailed) as failure:
        explain(broken, torch.randn(2, 3, 8, 8), method="saliency")
    message = str(failure.value)
    assert "\n" not in message and "'breaks'" in message and "(2, 3, 8, 8)" in message
    assert "RuntimeError: shape '[-1, 400]' is invalid" in message and "model(x)" in message
    assert isinstance(failure.value.__cause__, RuntimeError)
    broken.net.calls = 0
    assert_unharmed(broken, before)


@pytest.mark.parametrize("method", CLASS_METHODS)
def test_a_forward_that_raises_inside_the_method_names_the_method(method: str) -> None:
    broken = model(0)  # explain runs no forward of its own: the method's first one raises
    layer = "conv2" if get_method(method).needs_layer else "auto"
    options = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 2}}.get(method, {})
    before = snapshot(broken)
    with pytest.raises(MethodFailed, match=f"^{method} failed on model 'breaks'") as failure:
        explain(broken, torch.randn(2, 3, 8, 8), method=method, layer=layer, **options)
    assert "\n" not in str(failure.value)  # (copies the fast path makes count their own calls)
    assert isinstance(failure.value.__cause__, RuntimeError)
    broken.net.calls = 0
    assert_unharmed(broken, before)
