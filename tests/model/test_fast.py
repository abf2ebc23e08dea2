"""The inference fast path: never fails where the eager model works, and gives its numbers.

A frozen graph only where it is the same function as the model; channels-last and BN folding only
where they reproduce the plain copy (fast.py, the fallback rule).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from convscope import explain
from convscope.model import FastForward, Model, select
from convscope.model.fast import FREEZE_MIN_ROWS, as_input_of, inference_net, is_channels_last
from convscope.model.fold import fold_info
from convscope.model.guard import own_hook
from tests.fast_forwards import recorded_fast_forwards
from tests.model.flat_nets import HOWS, flat_inputs, flat_model, flat_net


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
    assert fast.dropped == ["frozen graph: untraceable: __bool__ turned a tensor into a Python value in "
                            "the model's forward in the dry pass (a trace would bake in the path this "
                            "input took)"]
    with torch.no_grad():
        torch.testing.assert_close(fast(flipped), net(flipped))


def _compares_values(_module: nn.Module, args: tuple, _output: Tensor) -> None:
    torch.equal(args[0], args[0])  # a tensor's value as a Python bool


def test_convscopes_own_hooks_do_not_make_a_model_untraceable() -> None:
    """A hook of convscope's (the logits a method keeps) reads values; the model does not."""
    net = flat_net("flatten")
    handle = net.register_forward_hook(own_hook(_compares_values))
    try:
        fast = FastForward(net, freeze=True)
        fast(flat_inputs(2))
        assert fast.frozen is not None and fast.dropped == []
    finally:
        handle.remove()


def test_a_users_own_hook_that_reads_values_is_part_of_the_model() -> None:
    net = flat_net("flatten")
    net.register_forward_hook(_compares_values)
    fast = FastForward(net, freeze=True)
    fast(flat_inputs(2))
    assert fast.frozen is None
    assert fast.dropped[0].startswith("frozen graph: untraceable: equal turned a tensor into a Python value")


def test_a_call_too_small_to_pay_for_tracing_says_so() -> None:
    fast = FastForward(flat_net("flatten"))
    fast.scores(flat_inputs(5), 1)
    assert fast.frozen is None
    assert fast.dropped == [f"frozen graph: not built: calls of at most 5 rows (tracing pays from "
                            f"{FREEZE_MIN_ROWS} rows in one call)"]
    fast = FastForward(flat_net("flatten"), rows=FREEZE_MIN_ROWS)  # the total of many small calls
    fast.scores(flat_inputs(5), 1)
    assert fast.frozen is not None and fast.dropped == []


@pytest.mark.parametrize(("method", "options"), [
    ("occlusion", {"window": 8, "stride": 8}),  # 144 windows
    ("rise", {"masks": 128}),
    ("lime", {"samples": 128}),
])
def test_forward_only_methods_on_lite0_run_on_the_frozen_graph(
        lite0: Model, method: str, options: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under explain(), whose logits hook is copied with the model (issue 23): frozen, nothing dropped."""
    made = recorded_fast_forwards(monkeypatch)
    x = lite0.normalize(torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0)))
    explain(lite0, x, method=method, **options)
    assert made and all(f.frozen is not None and f.dropped == [] for f in made), \
        [(f.frozen, f.dropped) for f in made]


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


# The fallback rule: every way of leaving the feature maps, through the fast path and each method.

@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("freeze", [False, True])
def test_the_fast_path_scores_like_the_eager_model(how: str, freeze: bool) -> None:
    net = flat_net(how)
    x = flat_inputs(7)
    target = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    with torch.no_grad():
        want = select(net(x), target)
    fast = FastForward(net, freeze=freeze)
    got = fast.scores(x, target, batch_size=3)  # chunks of 3, 3 and 1 rows
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert fast.fold_info.folded == 2  # both pairs fold in every variant
    if how == "view":  # x.view(-1, n) cannot run on a channels-last map: folded NCHW is kept
        assert not fast.channels_last
        assert any(d.startswith("fold + channels-last: RuntimeError: view size") for d in fast.dropped)
    else:
        assert fast.channels_last and not any("channels-last" in d for d in fast.dropped)
    if freeze and how == "masked":  # the loop over rows is unrolled for one batch size
        assert fast.frozen is None and any(d.startswith("frozen graph") for d in fast.dropped)
    elif freeze:
        assert fast.frozen is not None


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize(("method", "options"), [
    ("occlusion", {"window": 4, "stride": 4}),
    ("rise", {"masks": 16, "cells": 3}),
    ("scorecam", {"layer": "conv1"}),
    ("lime", {"samples": 24, "segments": 6}),
])
def test_forward_only_methods_give_the_eager_models_maps(how: str, method: str, options: dict) -> None:
    x = flat_inputs(2)
    fast = explain(flat_model(how), x, method=method, target=1, **options)
    if "layer" in options:
        options = {**options, "layer": f"inner.{options['layer']}"}
    eager = explain(flat_model(how, eager=True), x, method=method, target=1, **options)
    scale = float(eager.values.abs().max())
    assert scale > 0
    torch.testing.assert_close(fast.values, eager.values, rtol=1e-3, atol=1e-4 * scale)


def test_a_model_that_fails_eagerly_fails_the_same_way() -> None:
    net = flat_net("view")
    fast = FastForward(net)
    with pytest.raises(RuntimeError, match="shape"):  # 10x10 inputs do not fit the linear layer
        fast(torch.randn(2, 3, 10, 10))


def test_a_variant_that_fails_on_a_later_chunk_hands_over_to_the_plain_copy() -> None:
    net = flat_net("flatten")
    fast = FastForward(net, freeze=False)
    x = flat_inputs(4)
    fast(x[:2])
    assert fast.channels_last
    fast.net.fc.register_forward_pre_hook(_refuse_channels_last)  # the variant now fails
    with torch.no_grad():
        torch.testing.assert_close(fast(x[2:]), net(x[2:]), rtol=1e-4, atol=1e-5)
    assert fast.net is fast.plain and any("later chunk" in d for d in fast.dropped)


def _refuse_channels_last(_module: nn.Module, _args: tuple) -> None:
    raise RuntimeError("this chunk fails on the variant")


def test_the_scans_copy_is_checked_on_an_input_of_the_models_size() -> None:
    """inference_net (the dataset scan's copy) applies the same rule on one seeded input."""
    model = flat_model("view")
    net = inference_net(model, keep=[model.net.conv2])
    assert not is_channels_last(net)  # the view() would fail on a channels-last map
    assert fold_info(net).pairs == [("net.conv1", "net.bn1")]  # type: ignore[union-attr]
    x = flat_inputs(3)
    with torch.no_grad():
        torch.testing.assert_close(net(as_input_of(net, x)), model(x), rtol=1e-4, atol=1e-5)
    flat = flat_model("flatten")
    assert is_channels_last(inference_net(flat))
