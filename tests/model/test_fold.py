"""BatchNorm folding and the inference fast path: same numbers, fewer ops, the user's model untouched."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from convscope.errors import BadArgument, BadTarget
from convscope.model import FastForward, Model, default_batch_size, fast_forward, fold_batchnorm, select
from convscope.model.fold import fold_info
from tests.model_safety import HOOK_DICTS, assert_unharmed, snapshot

LITE0_PAIRS = 1 + 16 * 2 + 15 + 1
"""Stem, (depthwise, project) in each of the 16 blocks, expand in the 15 blocks that have one, head."""


class OpCounter(TorchDispatchMode):
    """Counts the aten operators a forward pass runs (a timing-free measure of work)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops += 1
        return func(*args, **(kwargs or {}))


def _trained_bn(*bns: nn.BatchNorm2d) -> None:
    """Non-trivial running statistics and affine parameters, so folding is really tested."""
    gen = torch.Generator().manual_seed(3)
    for bn in bns:
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=gen))
        bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
        if bn.affine:
            bn.weight.data.copy_(torch.randn(n, generator=gen))
            bn.bias.data.copy_(torch.randn(n, generator=gen))


class SkipNet(nn.Module):
    """conv1 -> bn1 (foldable); conv2 feeds bn2 AND a skip (not foldable); stats-free bn3."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv3, self.bn3 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4, track_running_stats=False)
        self.fc = nn.Linear(4, 3)
        _trained_bn(self.bn1, self.bn2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        c = self.conv2(h)
        h = self.bn2(c) + c
        h = self.bn3(self.conv3(h))
        return self.fc(h.mean((2, 3)))


class Branchy(nn.Module):
    """Data-dependent control flow at the top (fx cannot trace it) around traceable blocks."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.fc = nn.Linear(4, 2)
        _trained_bn(self.block[1])

    def forward(self, x: Tensor) -> Tensor:
        h = self.block(x)
        if h.mean() > 0:  # a Python bool of a traced value: fx gives up here
            h = h * 2
        return self.fc(h.mean((2, 3)))


class Shared(nn.Module):
    """One conv module called twice: folding it into one BN would break the other call."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)
        _trained_bn(self.bn)

    def forward(self, x: Tensor) -> Tensor:
        return (self.bn(self.conv(x)) + self.conv(x)).mean((1, 2, 3))[:, None]


def _state(model: nn.Module) -> list[tuple[str, object]]:
    return ([(k, v.clone()) for k, v in model.state_dict().items()]
            + [(n, type(m), m.training) for n, m in model.named_modules()]  # type: ignore[list-item]
            + [(n, p.requires_grad, p.stride()) for n, p in model.named_parameters()])  # type: ignore[list-item]


def _same_state(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x[1], y[1]) if isinstance(x[1], Tensor) else x == y for x, y in zip(a, b))


def test_lite0_folds_every_pair_and_keeps_its_logits(lite0: Model) -> None:
    before = _state(lite0)
    folded = fold_batchnorm(lite0)
    info = fold_info(folded)
    assert info is not None and info.traced and info.folded == LITE0_PAIRS
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert [n for n, _ in folded.named_modules()] == [n for n, _ in lite0.named_modules()]
    assert ("net._conv_stem", "net._bn0") in info.pairs
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(folded(x), lite0(x), atol=1e-4, rtol=0)
    assert _same_state(before, _state(lite0)), "the user's model changed"
    assert all(p.grad is None for p in lite0.parameters())


def test_lite0_folded_does_less_work(lite0: Model) -> None:
    """One op per BN pair fewer (its speed is measured in benchmarks/perturbation.py, not here)."""
    fast = FastForward(lite0, channels_last=False, freeze=False)
    plain = FastForward(lite0, fold=False, channels_last=False, freeze=False)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    counts = []
    for path in (plain, fast):
        path(x)  # the first chunk also runs the plain copy once, as the reference (fast.py)
        with OpCounter() as counter:
            path(x)
        counts.append(counter.ops)
    assert counts[1] <= counts[0] - LITE0_PAIRS, counts  # one op per BN gone at least


def test_only_conv_outputs_feeding_nothing_but_the_bn_fold() -> None:
    net = SkipNet().eval()
    before = _state(net)
    folded = fold_batchnorm(net)
    assert fold_info(folded).pairs == [("conv1", "bn1")]  # type: ignore[union-attr]
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.bn2, nn.BatchNorm2d)
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)
    assert _same_state(before, _state(net))


def test_keep_leaves_pairs_that_would_change_a_kept_output() -> None:
    """keep: a kept conv, or a kept container ending in the conv while its BN sits outside,
    stays unfolded; a kept BN, or a kept block holding both, folds (its output is unchanged)."""
    def net() -> nn.Sequential:
        torch.manual_seed(0)
        inner = nn.Sequential(nn.Conv2d(3, 4, 3))
        return nn.Sequential(inner, nn.BatchNorm2d(4), nn.ReLU(),
                             nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))).eval()

    plain = net()
    both = {("0.0", "1"), ("3.0", "3.1")}
    cases = {"0": {("3.0", "3.1")}, "0.0": {("3.0", "3.1")}, "1": both, "3": both,
             "3.0": {("0.0", "1")}}
    x = torch.randn(2, 3, 9, 9)
    for kept, pairs in cases.items():
        folded = fold_batchnorm(plain, keep=[plain.get_submodule(kept)])
        assert set(fold_info(folded).pairs) == pairs, kept  # type: ignore[union-attr]
        with torch.no_grad():  # the kept module's output in the copy is the original's
            torch.testing.assert_close(_output(folded, kept, x), _output(plain, kept, x),
                                       atol=1e-5, rtol=1e-5)


def _output(net: nn.Module, name: str, x: Tensor) -> Tensor:
    out: list[Tensor] = []
    handle = net.get_submodule(name).register_forward_hook(lambda m, i, o: out.append(o))
    try:
        net(x)
    finally:
        handle.remove()
    return out[0]


def test_untraceable_model_folds_its_traceable_children() -> None:
    net = Branchy().train()  # a train-mode user model: the copy is in eval mode, the user's stays
    folded = fold_batchnorm(net)
    info = fold_info(folded)
    assert info is not None and not info.traced and info.untraced == [""]
    assert info.pairs == [("block.0", "block.1")]
    assert net.training and net.block[1].training and not folded.training
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net.eval()(x), atol=1e-5, rtol=1e-5)


def test_a_shared_conv_is_not_folded() -> None:
    net = Shared().eval()
    folded = fold_batchnorm(net)
    assert fold_info(folded).folded == 0  # type: ignore[union-attr]
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x))


class ScaledBN(nn.BatchNorm2d):
    """A BatchNorm subclass that computes something else: it must not be folded as a BN."""

    def forward(self, x: Tensor) -> Tensor:
        return 2 * super().forward(x)


def test_hooked_and_subclassed_modules_are_not_folded() -> None:
    net = _per_sample_net()
    net[0].register_forward_pre_hook(lambda m, args: (args[0] * 0.5,))  # part of the model now
    sub = _per_sample_net()
    sub[1] = ScaledBN(4).eval()
    _trained_bn(sub[1])
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    for model in (net, sub):
        folded = fold_batchnorm(model)
        assert fold_info(folded).folded == 0  # type: ignore[union-attr]
        with torch.no_grad():
            torch.testing.assert_close(folded(x), model(x))


def test_the_copy_does_not_share_parameter_objects() -> None:
    net = SkipNet().eval()
    fast = FastForward(net, channels_last=True)
    fast(torch.randn(2, 3, 8, 8))  # the variant is chosen on the first chunk
    assert fast.channels_last
    assert not {id(p) for p in fast.net.parameters()} & {id(p) for p in net.parameters()}
    assert net.conv2.weight.is_contiguous()  # the copy's format change stayed in the copy
    assert fast.net.conv2.weight.is_contiguous(memory_format=torch.channels_last)


def _per_sample_net() -> nn.Module:
    """Every row's output depends on that row alone (unlike a stats-free BN): chunking is exact."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    _trained_bn(net[1])
    return net.eval()


@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_scores_match_the_model_in_any_chunking(channels_last: bool) -> None:
    net = _per_sample_net()
    x = torch.randn(7, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    target = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    with torch.no_grad():
        expected = select(net(x), target)
    fast = fast_forward(net, channels_last=channels_last)
    for batch in (1, 3, 100):
        torch.testing.assert_close(fast.scores(x, target, batch_size=batch), expected, atol=1e-5, rtol=1e-5)
    chunks = (x[i:i + 2] for i in range(0, 7, 2))
    seen: list[tuple[int, int]] = []
    got = fast.scores(chunks, target, total=7, progress=lambda d, t: seen.append((d, t)))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert seen == [(2, 7), (4, 7), (6, 7), (7, 7)]
    probs = fast.scores(x, lambda z: z[:, 1], softmax=True)
    torch.testing.assert_close(probs, net(x).softmax(1)[:, 1].detach(), atol=1e-5, rtol=1e-5)
    assert not fast.scores(x, 1).is_inference()  # usable in ordinary computations afterwards


def test_fast_scores_check_their_arguments() -> None:
    fast = FastForward(_per_sample_net())
    x = torch.randn(4, 3, 8, 8)
    with pytest.raises(BadTarget, match="3 targets for 4"):
        fast.scores(x, torch.tensor([0, 1, 2]))
    with pytest.raises(BadTarget, match="3 targets for more than 3"):
        fast.scores(iter([x[:2], x[2:]]), torch.tensor([0, 1, 2]))
    with pytest.raises(BadTarget, match="3 targets for 2"):
        fast.scores(iter([x[:2]]), torch.tensor([0, 1, 2]))
    with pytest.raises(BadArgument, match="batch_size"):
        fast.scores(x, 0, batch_size=0)


def test_default_batch_sizes() -> None:
    assert 1 <= default_batch_size("cpu") <= 16
    assert default_batch_size("cuda") >= 32
    assert default_batch_size(torch.device("cpu")) == default_batch_size("cpu")


class Switch(nn.Module):
    """A data-dependent branch decides whether the conv output is also used past its BN."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)
        self.block = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))  # wired the same on both paths
        _trained_bn(self.bn, self.block[1])

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv(x)
        h = self.bn(c) if x.mean() > 0 else self.bn(c) + c
        return self.block(h).mean((2, 3))


def test_pairs_wired_by_data_dependent_code_stay_unfolded() -> None:
    """The dry pass sees one path; the other would use the conv output past the BN."""
    net = Switch().eval()
    positive = torch.rand(2, 3, 4, 4) + 0.1
    folded = fold_batchnorm(net, example=positive)  # the path on which conv -> bn looks foldable
    info = fold_info(folded)
    assert info is not None and info.pairs == [("block.0", "block.1")] and info.untraced == [""]
    with torch.no_grad():
        for x in (positive, -positive):
            torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)


class Returns(nn.Module):
    """The conv output leaves the model next to its BN's output: it must stay unnormalized."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)
        _trained_bn(self.bn)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        c = self.conv(x)
        return self.bn(c), c


def test_a_conv_output_read_outside_its_bn_is_not_folded() -> None:
    net = Returns().eval()
    x = torch.randn(2, 3, 4, 4)
    folded = fold_batchnorm(net, example=x)
    assert fold_info(folded).folded == 0  # type: ignore[union-attr]
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x))


def test_the_dry_pass_leaves_no_hook_on_the_copy_and_none_on_the_model() -> None:
    net = SkipNet().eval()
    before = snapshot(net)
    folded = fold_batchnorm(net)
    assert not any(getattr(m, h) for m in folded.modules() for h in HOOK_DICTS)
    assert_unharmed(net, before)


def test_folding_does_not_disturb_forwards_in_other_threads() -> None:
    """torch.fx tracing patched nn.Module.__call__ for the whole process: another thread's
    forward then ran through the tracer and raised. Hooks on the private copy and a thread-local
    mode cannot reach it."""
    other = _per_sample_net()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = other(x)
    started, stop, failures, runs = threading.Event(), threading.Event(), [], [0]

    def forwards() -> None:
        while not stop.is_set():
            try:
                with torch.no_grad():
                    torch.testing.assert_close(other(x), want)
            except Exception as err:  # the assertion below reports it
                failures.append(err)
                return
            runs[0] += 1
            started.set()

    worker = threading.Thread(target=forwards)
    worker.start()
    try:
        assert started.wait(timeout=30)
        for _ in range(10):
            fold_batchnorm(SkipNet().eval())
            FastForward(Branchy().eval())(x)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert not failures, failures[0]
    assert runs[0] > 1
