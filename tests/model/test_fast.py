"""The inference fast path: a frozen graph only where it is the same function as the model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from convscope.model import FastForward, Model


def test_lite0_is_frozen_and_scores_like_the_model(lite0: Model) -> None:
    x = lite0.normalize(torch.rand(5, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    fast = FastForward(lite0, freeze=True)
    got = fast.scores(x, torch.arange(5), batch_size=2)  # the last chunk has another batch size
    assert fast.frozen is not None
    with torch.no_grad():
        want = lite0(x)[torch.arange(5), torch.arange(5)]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


class Branchy(nn.Module):
    """A data-dependent branch: a trace would record only the branch its example took."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x).mean((2, 3))
        return h if h.sum() > 0 else -h


def test_a_data_dependent_branch_stays_eager() -> None:
    torch.manual_seed(0)
    net = Branchy().eval()
    fast = FastForward(net, freeze=True)
    x = torch.randn(2, 3, 8, 8)
    flipped = -x
    with torch.no_grad():  # the two inputs take different branches
        assert (net.conv(flipped).mean((2, 3)).sum() > 0) != (net.conv(x).mean((2, 3)).sum() > 0)
    fast(x)
    assert fast.frozen is None
    with torch.no_grad():
        torch.testing.assert_close(fast(flipped), net(flipped))


def test_freeze_off_keeps_the_eager_copy(lite0: Model) -> None:
    fast = FastForward(lite0, freeze=False)
    fast(lite0.normalize(torch.rand(1, 3, 224, 224)))
    assert fast.frozen is None


def test_by_default_only_calls_large_enough_to_pay_for_tracing_freeze() -> None:
    from convscope.model import load_model
    from convscope.model.fast import FREEZE_MIN_ROWS

    digits = load_model("digits_cnn")
    fast = FastForward(digits)  # freeze left to the device: CPU freezes
    x = digits.normalize(torch.rand(FREEZE_MIN_ROWS, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    small = fast.scores(x[:4], 3)
    assert fast.frozen is None
    large = fast.scores(x, 3, batch_size=64)
    assert fast.frozen is not None
    torch.testing.assert_close(large[:4], small, rtol=1e-4, atol=1e-4)
