"""CRP: exact sums over a layer's channels, conservation per condition, zennit-crp, bad input.

The sums are properties LRP promises: every rule is linear in the relevance it is given, so the
heatmaps of all channels of a layer that every path crosses add up to the LRP map; without biases
and with (almost) zero stabilizers each heatmap sums to its channels' relevance at the layer and
the channels' relevances sum to the logit. zennit-crp (test-only, ``pip install --no-deps
zennit-crp``: it pins an older zennit it runs without) computes the same conditional heatmaps with
module hooks on a twin of the network (zennit's ``Sum`` layer at the skip), masking the relevance
at the layer and excluding the skip around it (``exclude_parallel``), as we do.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from convscope.errors import BadArgument, BadLayer
from convscope.methods.attribution.lrp import LRP
from convscope.methods.concepts import CRP
from convscope.model import Model, Preprocess, load_model
from tests.methods.attribution.test_lrp import import_zennit, pearson
from tests.model_safety import assert_unharmed, snapshot

TINY = {"epsilon": 1e-12, "stabilizer": 1e-12}


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (conv-bn-relu-conv-bn + skip, relu), its skip optionally
    through zennit's ``Sum`` layer."""

    def __init__(self, cin: int, cout: int, stride: int, bias: bool, zennit_sum: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)
        self.bn1, self.relu1 = nn.BatchNorm2d(cout, affine=bias), nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=bias)
        self.bn2, self.relu2 = nn.BatchNorm2d(cout, affine=bias), nn.ReLU()
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=bias), nn.BatchNorm2d(cout, affine=bias))
        self.sum = zennit_sum

    def forward(self, x: Tensor) -> Tensor:
        h = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu2(self.sum(torch.stack([h, skip], -1)) if self.sum is not None else h + skip)


class ResNetLike(nn.Module):
    """A torchvision-like ResNet: stem, two stages of BasicBlocks, global pooling, a dense head."""

    def __init__(self, bias: bool = True, zennit: Any = None) -> None:
        super().__init__()
        make_sum = (lambda: zennit.layer.Sum()) if zennit is not None else (lambda: None)
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=bias)
        self.bn1, self.relu = nn.BatchNorm2d(8, affine=bias), nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(8, 8, 1, bias, make_sum()))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2, bias, make_sum()))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(self.avgpool(h).flatten(1))


def resnet(bias: bool = True, dtype: torch.dtype = torch.float32, zennit: Any = None) -> Model:
    torch.manual_seed(0)
    net = ResNetLike(bias, zennit)
    gen = torch.Generator().manual_seed(3)
    for m in net.modules():  # statistics that are not the identity, so the BN fold matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2 * bias, 0.2 * bias, generator=gen)  # bias-free: a pure scale
            m.running_var.uniform_(0.5, 1.5, generator=gen)
    return Model(net.to(dtype).eval(), preprocess=Preprocess(input_size=(16, 16)), name="resnet-like")


def images(model: Model, batch: int, channels: int = 3, side: int = 16) -> Tensor:
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(1)
    return model.normalize(torch.rand(batch, channels, side, side, generator=gen, dtype=dtype))


@pytest.fixture(scope="module")
def digits() -> Model:
    return load_model("digits_cnn")


def digit_images(model: Model, batch: int = 2) -> Tensor:
    return images(model, batch, channels=1, side=28)


@pytest.mark.parametrize("layer", ["block2", "pool2", "block3.0"])
def test_heatmaps_of_all_channels_add_up_to_the_lrp_map(digits: Model, layer: str) -> None:
    x = digit_images(digits)
    crp = CRP(digits, layer=layer, batch_size=40)  # several chunks of rows
    count = crp.conditional(x, [3, 5], top=1).relevance.shape[1]
    maps = crp.conditional(x, [3, 5], channels=list(range(count)))
    full = LRP(digits)(x, [3, 5])
    total = maps.heatmaps.sum(1)
    assert maps.heatmaps.shape == (2, count, 1, 28, 28)
    assert float((total - full).abs().max() / full.abs().max()) < 1e-4
    assert float((total.sum((1, 2, 3)) - full.sum((1, 2, 3))).abs().max() / full.abs().max()) < 1e-4
    torch.testing.assert_close(crp(x, [3, 5]), full, rtol=1e-4, atol=1e-6 * float(full.abs().max()))


def test_on_a_resnet_the_channels_of_a_block_output_add_up_and_a_skip_is_excluded() -> None:
    model = resnet()
    x = images(model, 2)
    full = LRP(model)(x, 1)
    whole = CRP(model, layer="layer1").conditional(x, 1, channels=list(range(8))).heatmaps.sum(1)
    assert float((whole - full).abs().max() / full.abs().max()) < 1e-4
    # inside the block, the skip carries part of the relevance around conv1: not through it
    inner = CRP(model, layer="layer1.0.conv1").conditional(x, 1, channels=list(range(8))).heatmaps.sum(1)
    assert float((inner - full).abs().max() / full.abs().max()) > 1e-2


@pytest.mark.parametrize("composite", ["epsilon_plus", "epsilon", "epsilon_gamma_box"])
@pytest.mark.parametrize("layer", ["layer1", "layer2.0.conv1", "conv1"])
def test_conditional_relevance_is_conserved_without_biases(composite: str, layer: str) -> None:
    """Without biases: each heatmap sums to its channels' relevance at the layer; at a layer every
    path crosses, the channels' relevances sum to the logit."""
    model = resnet(bias=False, dtype=torch.float64)
    x = images(model, 2)
    crp = CRP(model, layer=layer, composite=composite, **TINY)
    maps = crp.conditional(x, [1, 4], channels=[0, [2, 5], 7])
    expected = torch.stack([maps.relevance[:, 0], maps.relevance[:, [2, 5]].sum(1), maps.relevance[:, 7]], 1)
    torch.testing.assert_close(maps.heatmaps.sum((2, 3, 4)), expected, rtol=1e-9, atol=1e-12)
    assert maps.conditions[0] == [(0,), (2, 5), (7,)]
    logits = model(x)[[0, 1], [1, 4]]
    torch.testing.assert_close(maps.scores, logits)
    # z+ loses what a unit without positive contributions receives (a branch below zero that a
    # skip lifts above it); the downsampling skip goes around layer2.0.conv1
    if composite != "epsilon_plus" and layer != "layer2.0.conv1":
        torch.testing.assert_close(maps.relevance.sum(1), logits, rtol=1e-9, atol=1e-12)


def test_top_channels_are_the_most_relevant_of_each_image(digits: Model) -> None:
    x = digit_images(digits, 3)
    maps = CRP(digits, layer="block4").conditional(x, "top1", top=4)
    for b in range(3):
        chosen = [c for (c,) in maps.conditions[b]]
        assert chosen == maps.relevance[b].argsort(descending=True)[:4].tolist()
        assert maps.relevance[b, chosen[0]] == maps.relevance[b].max()


def zennit_crp_heatmaps(zennit: Any, net: nn.Module, composite: Any, x: Tensor, layer: str,
                        channels: list[int], target: list[int]) -> Tensor:
    """zennit-crp's conditional heatmaps (B, K, H, W) for each channel of ``layer``."""
    from crp.attribution import CondAttribution

    attribution = CondAttribution(net, no_param_grad=False)
    conditions = [{layer: [c], "y": [t]} for t in target for c in channels]
    data = x.repeat_interleave(len(channels), 0).requires_grad_(True)  # one row per condition
    result = attribution(data, conditions, composite)
    return result.heatmap.view(len(target), len(channels), *x.shape[2:])


def assert_same_maps(got: Tensor, expected: Tensor) -> None:
    """Pearson r >= 0.99 per map; a channel that carries no relevance gives zero maps on both sides."""
    empty = expected.flatten(1).abs().amax(1) == 0
    assert (got[empty] == 0).all()
    assert (~empty).sum() >= len(empty) // 2
    r = pearson(got[~empty], expected[~empty])
    assert (r >= 0.99).all(), r


def box(model: Model, x: Tensor) -> tuple[Tensor, Tensor]:
    return model.normalize(torch.zeros_like(x[:1])), model.normalize(torch.ones_like(x[:1]))


@pytest.mark.parametrize("layer", ["block2", "block3.0", "block4.2"])
def test_agrees_with_zennit_crp_on_digits_cnn(digits: Model, layer: str) -> None:
    zennit = import_zennit()
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonGammaBox

    x, target, channels = digit_images(digits, 2), [3, 8], [0, 5, 9, 13]
    low, high = box(digits, x)
    composite = EpsilonGammaBox(low=low, high=high, canonizers=[SequentialMergeBatchNorm()])
    expected = zennit_crp_heatmaps(zennit, copy.deepcopy(digits.net), composite, x, layer, channels, target)
    got = CRP(digits, layer=layer).conditional(x, target, channels=channels).heatmaps.sum(2)
    assert_same_maps(got.flatten(0, 1), expected.flatten(0, 1))


@pytest.mark.parametrize("layer", ["layer1", "layer1.0.conv1", "layer2.0.conv2"])
def test_agrees_with_zennit_crp_on_a_torchvision_like_resnet(layer: str) -> None:
    zennit = import_zennit()
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlusFlat

    ours, twin = resnet(), resnet(zennit=zennit)
    twin.net.load_state_dict(ours.net.state_dict())
    x, target, channels = images(ours, 2), [1, 3], [0, 2, 6]
    composite = EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])
    expected = zennit_crp_heatmaps(zennit, twin.net, composite, x, layer, channels, target)
    got = CRP(ours, layer=layer, composite="epsilon_plus_flat").conditional(
        x, target, channels=channels).heatmaps.sum(2)
    assert_same_maps(got.flatten(0, 1), expected.flatten(0, 1))


def test_the_model_is_left_unharmed(digits: Model) -> None:
    before = snapshot(digits)
    CRP(digits, layer="block2").conditional(digit_images(digits), "top1", top=3)
    assert_unharmed(digits, before)
    assert all(p.grad is None for p in digits.parameters())


class WithAside(nn.Module):
    """A classifier with a branch whose output the logits never use."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.aside = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        self.aside(x)
        return self.fc(self.conv(x).relu().mean((2, 3)))


def test_bad_input_is_refused_in_one_line(digits: Model) -> None:
    x = digit_images(digits)
    crp = CRP(digits, layer="block2")
    for kwargs, words in [({"channels": [3, 32]}, "channel 32 is out of range: layer 'block2' has 32"),
                          ({"channels": [-1]}, "channel -1 is out of range"),
                          ({}, "one of the two"), ({"channels": [1], "top": 2}, "one of the two"),
                          ({"top": 0}, "top=0"), ({"channels": []}, "give a list of channels")]:
        with pytest.raises(BadArgument, match=words) as err:
            crp.conditional(x, 1, **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(BadLayer, match="blok2"):
        CRP(digits, layer="blok2")
    aside = Model(WithAside().eval(), preprocess=Preprocess(input_size=(8, 8)), name="aside")
    with pytest.raises(BadLayer, match="does not depend on layer 'aside'"):
        CRP(aside, layer="aside").conditional(torch.rand(1, 3, 8, 8), 0, top=1)


def test_k_conditions_cost_one_pass_and_one_repeated_pass_to_the_layer(digits: Model) -> None:
    """Batched as zennit-crp batches conditions: the network runs once on the images and once on
    the images repeated K times, and that second run stops at the layer."""
    from torch.nn.modules.module import register_module_forward_pre_hook

    calls: list[tuple[str, int]] = []

    def count(module: nn.Module, args: tuple[Any, ...]) -> None:
        if type(module).__name__ in {"DigitsCNN", "Linear"}:
            calls.append((type(module).__name__, args[0].shape[0]))

    x = digit_images(digits, 2)
    crp = CRP(digits, layer="block3")
    crp.conditional(x, 1, top=1)  # the folded copy is made (and its forward counted) here
    handle = register_module_forward_pre_hook(count)
    try:
        crp.conditional(x, 1, channels=list(range(8)))
    finally:
        handle.remove()
    assert calls == [("DigitsCNN", 2), ("Linear", 2), ("DigitsCNN", 16)]
