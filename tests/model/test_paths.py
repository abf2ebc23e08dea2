"""The data-flow trace that tells an affine head from a non-linear one, and the unit rise."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.model.paths import affine_after, rise_response


class Head(nn.Module):
    """``feat`` (an Identity on the input), then ``body``, then a Linear layer."""

    def __init__(self, body: Callable[[nn.Module, Tensor], Tensor]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = body
        self.feat = nn.Identity()
        self.bn = nn.BatchNorm2d(3).eval()
        self.drop = nn.Dropout(0.3)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.unused = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(self, self.feat(x)))


AFFINE = {
    "gap": lambda m, a: a.mean((2, 3)),
    "pool_flatten": lambda m, a: F.adaptive_avg_pool2d(a, 1).flatten(1),
    "bn_dropout_conv": lambda m, a: m.drop(m.conv(m.bn(a))).sum((2, 3)) / 7,
    "scaled_sum": lambda m, a: (2 * a - a[:, :1] + 1).mean((2, 3)),
    "view_cat": lambda m, a: torch.cat([a, a], 1).view(a.shape[0], 6, -1).mean(2)[:, :3],
}
NONLINEAR = {
    "relu": (lambda m, a: F.relu(a).mean((2, 3)), "relu"),
    "square": (lambda m, a: (a * a).mean((2, 3)), "mul"),
    "max_pool": (lambda m, a: F.adaptive_max_pool2d(a, 1).flatten(1), "adaptive_max_pool2d"),
    "in_place_relu": (lambda m, a: a.clone().relu_().mean((2, 3)), "relu_"),
    "divide_by_itself": (lambda m, a: (a / a.abs().sum()).mean((2, 3)), "abs"),
}


def _x() -> Tensor:
    return torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list(AFFINE))
def test_affine_heads_are_recognized_and_their_rise_is_exact(name: str) -> None:
    net = Head(AFFINE[name]).eval()
    path = affine_after(net, _x(), "feat")
    assert path.affine, path.reason
    # exact for an affine map: the same change from any starting point
    a, b = rise_response(net, _x(), "feat", 1), rise_response(net, 3 * _x() + 1, "feat", 1)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    rise = torch.zeros_like(_x())
    rise[:, 1] = 1
    torch.testing.assert_close(a, net(_x() + rise) - net(_x()), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(NONLINEAR))
def test_the_first_nonlinear_operation_is_named(name: str) -> None:
    body, culprit = NONLINEAR[name]
    path = affine_after(Head(body).eval(), _x(), "feat")
    assert not path.affine and repr(culprit) in path.reason


def test_a_layer_the_output_does_not_use_is_not_affine() -> None:
    def side(m: nn.Module, a: Tensor) -> Tensor:
        m.unused(a)
        return a.mean((2, 3))

    path = affine_after(Head(side).eval(), _x(), "unused")
    assert not path.affine and "does not depend" in path.reason


def test_training_mode_dropout_is_not_affine_when_asked_for_explicitly() -> None:
    path = affine_after(Head(lambda m, a: F.dropout(a, 0.5, True).mean((2, 3))).eval(), _x(), "feat")
    assert not path.affine and "'dropout'" in path.reason
