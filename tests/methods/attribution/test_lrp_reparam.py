"""LRP on parallel conv + BN branches that are summed (RepVGG): merged for the call, or a warning.

The hand-built RepVGG network of :mod:`tests.rep_blocks` offers ``reparameterize()`` as timm's
blocks do. LRP must explain the merged network (one conv per block, which conserves like any
conv), leave the user's network with its branches, refuse a merge that changes the function, and
warn, naming layers and the size of the miss, where the branches stay and break the sum.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import Tensor, nn

from convscope.methods.attribution import LRP
from convscope.model import Model, Preprocess
from tests.model_safety import assert_unharmed, snapshot
from tests.rep_blocks import FixedBlock, RepBlock, RepNet, WrongMergeBlock, rep_net

SEED = 1
"""A seed whose branches nearly cancel somewhere: unmerged, LRP-epsilon misses the logit 50-fold."""


def _model(net: nn.Module) -> Model:
    return Model(net, preprocess=Preprocess(input_size=(16, 16)), name="repnet")


def _inputs(dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)).to(dtype)


def _lrp(net: nn.Module, x: Tensor) -> tuple[Tensor, LRP, list[str]]:
    method = LRP(_model(net), composite="epsilon")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        relevance = method(x, 1)
    return relevance, method, [str(w.message) for w in caught]


def _merged_by_hand(net: RepNet) -> RepNet:
    twin = copy.deepcopy(net)
    for block in twin.blocks:
        assert isinstance(block, RepBlock)
        block.reparameterize()
    return twin


def test_lrp_explains_the_merged_network_and_leaves_the_branches() -> None:
    net = rep_net(RepBlock, SEED)
    before = snapshot(net)
    relevance, method, said = _lrp(net, _inputs())
    assert_unharmed(net, before)
    assert method.merged and all(b.reparam is None for b in net.blocks)  # type: ignore[union-attr]
    reference, _, _ = _lrp(_merged_by_hand(net), _inputs())
    torch.testing.assert_close(relevance, reference, rtol=1e-4, atol=1e-6)
    assert not [s for s in said if "not conserved" in s]


def test_merged_lrp_conserves_without_biases() -> None:
    net = rep_net(RepBlock, SEED).double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(getattr(m, "bias", None), Tensor):
                m.bias.zero_()
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_()
    x = _inputs(torch.float64)
    method = LRP(_model(net), composite="epsilon", epsilon=1e-12, stabilizer=1e-12)
    relevance = method(x, 1)
    with torch.no_grad():
        logit = net(x)[:, 1]
    assert method.merged
    torch.testing.assert_close(relevance.sum((1, 2, 3)), logit, rtol=1e-8, atol=0.0)


def test_lrp_warns_with_the_layers_where_summed_branches_break_conservation() -> None:
    net = rep_net(FixedBlock, SEED)
    relevance, method, said = _lrp(net, _inputs())
    with torch.no_grad():
        logit = net(_inputs())[:, 1]
    miss = float(((relevance.sum((1, 2, 3)) - logit).abs() / logit.abs()).max())
    assert not method.merged and miss > 10
    (message,) = [s for s in said if "not conserved" in s]
    assert f"off by {miss:.3g} times the score" in message
    assert "'blocks." in message and "% of the target score" in message


def test_a_merge_that_changes_the_function_is_not_used() -> None:
    relevance, method, _ = _lrp(rep_net(WrongMergeBlock, SEED), _inputs())
    unmerged, _, _ = _lrp(rep_net(FixedBlock, SEED), _inputs())
    assert not method.merged
    torch.testing.assert_close(relevance, unmerged)


@pytest.mark.parametrize("block", [RepBlock, WrongMergeBlock])
def test_the_merge_leaves_a_train_mode_network_alone(block: type[RepBlock]) -> None:
    net = rep_net(block, SEED).train()
    net.stem.weight.requires_grad_(False)
    net.blocks[1].register_forward_hook(lambda m, i, o: None)
    before = snapshot(net)
    _lrp(net, _inputs())
    assert_unharmed(net, before)


class Halved(nn.Module):
    """conv -> ReLU -> times 0.5 -> GAP -> linear, without biases: the constant scales relevance."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc((torch.relu(self.conv(x)) * 0.5).mean((2, 3)))


def test_lrp_warns_where_an_unwatched_operation_changes_the_sum() -> None:
    torch.manual_seed(0)
    net = Halved().eval()
    x = _inputs()
    relevance, _, said = _lrp(net, x)
    with torch.no_grad():
        logit = net(x)[:, 1]
    torch.testing.assert_close(relevance.sum((1, 2, 3)), 0.5 * logit)  # half is lost, not absorbed
    (message,) = [s for s in said if "not watched" in s]
    assert "(50% of the target score)" in message
