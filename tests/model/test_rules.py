"""Backward rules: every rectifier spelling gets the rule, forwards are unchanged, state is undone."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.errors import BadArgument
from convscope.model import capture
from convscope.model.rules import (
    DECONV,
    GUIDED,
    LINEAR,
    ActivationCall,
    BackwardRule,
    active_rule,
    backward_rule,
)


def input_grad(net: nn.Module, x: Tensor, rule: BackwardRule | None, cls: int = 0) -> Tensor:
    x = x.clone().requires_grad_(True)
    if rule is None:
        out = net(x)
    else:
        with backward_rule(rule):
            out = net(x)
    (grad,) = torch.autograd.grad(out[:, cls].sum(), x)
    return grad


def modes() -> int:
    return torch._C._len_torch_function_stack()


@pytest.mark.parametrize("rule", [GUIDED, DECONV, LINEAR], ids=lambda r: r.name)
def test_every_relu_spelling_gets_the_rule(make_net, relu_spelling, image, rule) -> None:
    reference = input_grad(make_net("nn.ReLU"), image, rule)
    plain = input_grad(make_net("nn.ReLU"), image, None)
    assert not torch.allclose(reference, plain)  # the rule changes something on this net
    assert torch.equal(input_grad(make_net(relu_spelling), image, rule), reference)


def test_forward_is_unchanged_under_the_mode(make_net, relu_spelling, image) -> None:
    net = make_net(relu_spelling)
    expected = net(image)
    with backward_rule(GUIDED):
        got = net(image.clone().requires_grad_(True))
    assert torch.equal(got, expected)


def test_relu6_spellings_get_the_rule_and_keep_the_cap(make_net, relu6_spelling, image) -> None:
    net = make_net(relu6_spelling, scale=4.0)
    with capture(net, "conv1") as acts:
        expected = net(image)
    assert (acts["conv1"] > 6).any()  # some units saturate, so the upper mask matters
    with backward_rule(GUIDED):
        assert torch.equal(net(image), expected)
    reference = input_grad(make_net("nn.ReLU6", scale=4.0), image, GUIDED)
    assert torch.equal(input_grad(net, image, GUIDED), reference)
    assert not torch.allclose(reference, input_grad(make_net("nn.ReLU", scale=4.0), image, GUIDED))


def _manual(x: Tensor, conv1: nn.Conv2d, conv2: nn.Conv2d, guided: bool) -> Tensor:
    """Guided backprop / deconvnet for conv1-relu-conv2-relu-sum written out step by step."""
    x = x.clone().requires_grad_(True)
    z1 = conv1(x)
    h1 = z1.relu().detach().requires_grad_(True)
    z2 = conv2(h1)
    signal = torch.ones_like(z2)
    signal = signal.clamp(min=0) * (z2 > 0) if guided else signal.clamp(min=0)
    (g_h1,) = torch.autograd.grad(z2, h1, signal)
    g_z1 = g_h1.clamp(min=0) * (z1 > 0) if guided else g_h1.clamp(min=0)
    (g_x,) = torch.autograd.grad(z1, x, g_z1)
    return g_x


@pytest.mark.parametrize("rule", [GUIDED, DECONV], ids=lambda r: r.name)
def test_rules_match_the_papers_equations(rule, image) -> None:
    torch.manual_seed(3)
    conv1, conv2 = nn.Conv2d(3, 5, 3), nn.Conv2d(5, 4, 3)
    x = image.clone().requires_grad_(True)
    with backward_rule(rule):
        out = F.relu(conv2(torch.relu(conv1(x)))).sum()
    (got,) = torch.autograd.grad(out, x)
    torch.testing.assert_close(got, _manual(image, conv1, conv2, guided=rule is GUIDED))


@pytest.mark.parametrize("rule", [GUIDED, DECONV], ids=lambda r: r.name)
def test_signal_below_each_rectifier_is_nonnegative(make_net, image, rule) -> None:
    net = make_net("nn.ReLU(inplace)")
    for wrapped in (False, True):
        with capture(net, ["conv1", "conv3"], grads=True) as acts:
            if wrapped:
                with backward_rule(rule):
                    out = net(image)
            else:
                out = net(image)
        grads = acts.gradients(out[:, 0])
        negative = any(bool((g < 0).any()) for g in grads.values())
        assert negative is not wrapped  # plain gradients have both signs; guided/deconv do not


def test_plain_gradient_is_restored_after_the_block(make_net, image) -> None:
    net = make_net("F.relu(inplace)")
    before = input_grad(net, image, None)
    input_grad(net, image, GUIDED)
    assert active_rule() is None and modes() == 0
    assert torch.equal(input_grad(net, image, None), before)


def test_graph_recorded_in_the_block_keeps_its_rule(make_net, image) -> None:
    net = make_net("torch.relu")
    x = image.clone().requires_grad_(True)
    with backward_rule(GUIDED):
        out = net(x)
        (inside,) = torch.autograd.grad(out[:, 0].sum(), x, retain_graph=True)
    (after,) = torch.autograd.grad(out[:, 0].sum(), x)
    assert torch.equal(inside, after)
    assert torch.equal(after, input_grad(net, image, GUIDED))


def test_mode_is_removed_when_the_forward_raises(image) -> None:
    def explode(t: Tensor) -> Tensor:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"), backward_rule(GUIDED):
        explode(torch.relu(image))
    assert active_rule() is None and modes() == 0


def test_blocks_do_not_nest_and_reject_non_rules() -> None:
    with backward_rule(GUIDED):
        assert active_rule() is GUIDED
        with pytest.raises(BadArgument, match="do not nest"), backward_rule(DECONV):
            pass
        assert active_rule() is GUIDED
    assert modes() == 0
    with pytest.raises(BadArgument, match="BackwardRule"), backward_rule("guided"):  # type: ignore[arg-type]
        pass


def test_other_clamps_and_activations_keep_plain_gradients(image) -> None:
    funcs: list[Callable[[Tensor], Tensor]] = [
        lambda t: t.clamp(-1, 1), F.hardtanh, lambda t: F.leaky_relu(t, 0.1), torch.sigmoid,
        lambda t: torch.clamp(t, min=0.5),
    ]
    signal = torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    for fn in funcs:
        x = image.clone().requires_grad_(True)
        (plain,) = torch.autograd.grad(fn(x), x, signal)
        with backward_rule(GUIDED):
            out = fn(x)
        (ruled,) = torch.autograd.grad(out, x, signal)
        assert torch.equal(plain, ruled)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script
def test_block_counts_routed_calls(make_net, relu_spelling, image) -> None:
    net = make_net(relu_spelling)
    with backward_rule(GUIDED) as block:
        assert block.rule is GUIDED and block.calls == 0
        net(image)
    assert block.calls == 3
    with backward_rule(GUIDED) as block:
        torch.jit.script(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()))(image)
    assert block.calls == 0  # TorchScript hides its ReLUs: callers can tell


def test_inplace_change_of_a_relu6_output_is_as_legal_as_without_the_mode(image) -> None:
    def net(x: Tensor) -> Tensor:
        h = F.relu6(x * 4)
        h.add_(1)  # hardtanh's own backward keeps its input, so this is legal in PyTorch
        return h

    x = image.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(net(x).sum(), x)
    with backward_rule(GUIDED):
        out = net(x)
    (ruled,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(plain, ruled)  # all-positive signal: guided == plain


def test_integer_tensors_pass_through() -> None:
    with backward_rule(GUIDED):
        assert torch.relu(torch.tensor([-2, 3])).tolist() == [0, 3]


class _Recorder(BackwardRule):
    """A stateful rule in the way DeepLIFT will use it: forward stores, backward reads."""

    name = "recorder"
    needs_input = True

    def __init__(self) -> None:
        self.calls: list[ActivationCall] = []
        self.backward_order: list[int] = []

    def forward(self, call: ActivationCall) -> None:
        call.state["input_copy"] = call.inp.clone()  # type: ignore[union-attr]
        self.calls.append(call)

    def backward(self, call: ActivationCall, grad_out: Tensor) -> Tensor:
        assert call.inp is not None
        assert torch.equal(call.inp, call.state["input_copy"])  # in-place did not clobber it
        assert torch.equal(call.out, call.inp.clamp(min=0, max=call.hi))
        self.backward_order.append(call.index)
        return grad_out * call.mask()


def test_rule_sees_input_output_and_its_state_also_for_inplace_calls(make_net, image) -> None:
    rule = _Recorder()
    net = make_net("Tensor.relu_")
    x = image.clone().requires_grad_(True)
    with backward_rule(rule):
        out = net(x)
    (got,) = torch.autograd.grad(out[:, 1].sum(), x)
    assert [c.index for c in rule.calls] == [0, 1, 2]
    assert all(c.lo == 0 and c.hi is None for c in rule.calls)
    assert rule.backward_order == [2, 1, 0]
    torch.testing.assert_close(got, input_grad(net, image, None, cls=1))  # mask == plain gradient


# ---- elementwise nonlinearities and watched calls (rules with ``elementwise`` / ``amount``) -------

SMOOTH: dict[str, Callable[[Tensor], Tensor]] = {
    "nn.Sigmoid": nn.Sigmoid(),
    "torch.tanh": torch.tanh,
    "Tensor.sigmoid_": lambda t: t.sigmoid_(),
    "nn.SiLU(inplace)": nn.SiLU(inplace=True),
    "F.gelu(tanh)": lambda t: F.gelu(t, approximate="tanh"),
    "nn.ELU(inplace)": nn.ELU(inplace=True),
    "F.leaky_relu(inplace)": lambda t: F.leaky_relu(t, 0.2, True),
    "nn.Hardswish": nn.Hardswish(),
    "nn.Softplus(beta=2)": nn.Softplus(beta=2.0),
    "F.hardtanh(-1, 1)": F.hardtanh,
    "clamp(-1, 2)": lambda t: t.clamp(-1, 2),
    "nn.PReLU": nn.PReLU(init=0.3),
}


class _Tangent(BackwardRule):
    """Routes every elementwise call and passes the plain gradient through call.tangent()."""

    name = "tangent"
    needs_input = True
    elementwise = True

    def __init__(self) -> None:
        self.seen: list[ActivationCall] = []

    def backward(self, call: ActivationCall, grad_out: Tensor) -> Tensor:
        self.seen.append(call)
        return grad_out * call.tangent()


@pytest.mark.parametrize("spelling", list(SMOOTH))
def test_elementwise_calls_are_routed_with_their_forward_and_tangent(spelling: str, image: Tensor) -> None:
    fn = SMOOTH[spelling]
    x = (image * 2).requires_grad_(True)
    signal = torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    plain_out = fn(x * 1.0)
    (plain,) = torch.autograd.grad(plain_out, x, signal)
    rule = _Tangent()
    with backward_rule(rule) as block:
        out = fn(x * 1.0)
    (ruled,) = torch.autograd.grad(out, x, signal)
    assert block.calls == 1 and len(rule.seen) == 1 and rule.seen[0].fn is not None
    assert torch.equal(out, plain_out)  # bit-identical forward
    torch.testing.assert_close(ruled, plain, rtol=1e-6, atol=1e-7)
    with backward_rule(GUIDED) as block:  # rules without ``elementwise`` leave them alone
        fn(x * 1.0)
    assert block.calls == 0


class _Relevance(BackwardRule):
    """Pass-through with the signal's sum as the conserved amount: every product is watched."""

    name = "sums"
    elementwise = True

    def backward(self, call: ActivationCall, grad_out: Tensor) -> Tensor:
        return grad_out

    def amount(self, signal: Tensor, value: Tensor) -> Tensor | None:
        return signal.flatten(1).sum(1)


class _Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(3, 4, 1), _Gate())
        self.norm = nn.LayerNorm(4)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inner(x) * 2.0  # a product with a constant is linear: not watched
        return self.norm(h.permute(0, 2, 3, 1)).flatten(1)


class _Gate(nn.Module):
    def forward(self, h: Tensor) -> Tensor:
        return h * torch.sigmoid(h)


def test_watched_calls_record_their_gap_and_layer(image: Tensor) -> None:
    net = _Gated()
    x = image.clone().requires_grad_(True)
    hooks_before = len(torch.nn.modules.module._global_forward_hooks)
    with backward_rule(_Relevance(), net=net) as block:
        out = net(x)
        assert len(torch.nn.modules.module._global_forward_hooks) == hooks_before + 1
    assert len(torch.nn.modules.module._global_forward_hooks) == hooks_before
    signal = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (plain,) = torch.autograd.grad(net(x), x, signal)
    (ruled,) = torch.autograd.grad(out, x, signal)
    assert [(g.layer, g.op) for g in block.gaps] == [("norm", "layer_norm"), ("inner.1", "mul")]
    # the watched calls keep their plain gradient; the sigmoid inside the gate passes through
    h = net.inner[0](x.detach())
    assert not torch.equal(plain, ruled) and torch.isfinite(ruled).all()
    norm_in = h * torch.sigmoid(h) * 2.0
    with torch.enable_grad():  # the layer_norm gap by hand: sum of signal minus sum of its input grad
        leaf = norm_in.permute(0, 2, 3, 1).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net.norm(leaf).flatten(1), leaf, signal)
    torch.testing.assert_close(block.gaps[0].gap, signal.sum(1) - g.flatten(1).sum(1))


def test_watch_hooks_are_removed_when_the_forward_raises(image: Tensor) -> None:
    class Boom(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            raise ValueError("boom")

    hooks = (len(torch.nn.modules.module._global_forward_hooks),
             len(torch.nn.modules.module._global_forward_pre_hooks))
    with pytest.raises(ValueError, match="boom"), backward_rule(_Relevance()):
        Boom()(image)
    assert (len(torch.nn.modules.module._global_forward_hooks),
            len(torch.nn.modules.module._global_forward_pre_hooks)) == hooks
    assert modes() == 0


@pytest.mark.parametrize("rule", [_Tangent(), _Relevance()], ids=["needs-input", "pass"])
def test_inplace_change_of_a_gelu_output_stays_legal(rule: BackwardRule, image: Tensor) -> None:
    def net(x: Tensor) -> Tensor:
        h = F.gelu(x * 2)
        h.add_(1)  # GELU's own backward keeps its input, so this is legal in PyTorch
        return h

    x = image.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(net(x).sum(), x)
    with backward_rule(rule) as block:
        out = net(x)
    (ruled,) = torch.autograd.grad(out.sum(), x)
    assert block.calls == 1
    if isinstance(rule, _Tangent):
        torch.testing.assert_close(ruled, plain)
    else:
        assert torch.equal(ruled, torch.full_like(x, 2.0))  # relevance passes the GELU unchanged


def test_which_calls_are_watched() -> None:
    a = torch.randn(2, 3, 4, requires_grad=True)
    weight = nn.Parameter(torch.randn(4, 4))
    with backward_rule(_Relevance()) as block:
        outs = [torch.einsum("bij,bkj->bik", a, a * 2), torch.bmm(a, a.transpose(1, 2)),
                a.softmax(-1), a / a.exp(), a * 2.0, a @ weight, torch.sigmoid(a)]
    torch.autograd.grad([o.sum() for o in outs], a)
    assert sorted(g.op for g in block.gaps) == ["bmm", "div", "einsum", "softmax"]
