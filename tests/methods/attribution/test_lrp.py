"""LRP: conservation, each rule against its formula, LRP-0 = gradient x input, zennit, model safety.

Conservation (the input relevance sums to the target logit) holds exactly only without biases, so
those tests use bias-free networks in float64 with tiny stabilizers. With biases, LRP-0 must equal
gradient x input (the biases drop out of that identity), which checks the whole propagation
(residual adds, pooling, rectifiers spelled four ways) against plain autograd. zennit (test-only,
``pip install --no-deps zennit``; its torchvision import is stubbed when torchvision is absent)
implements the same composites with module hooks, so its networks use ``nn.ReLU`` modules and its
``Sum`` layer for the residual add.
"""

from __future__ import annotations

import copy
import sys
import types
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.data import load_image
from convscope.errors import BadArgument, BadLayer
from convscope.methods.attribution.lrp import LRP, AlphaBeta, Epsilon, Flat, Gamma, LayerCall, ZBox, ZPlus
from convscope.methods.attribution.lrp.rules import stabilize
from convscope.methods.registry import build_method, get_method
from convscope.model import Model, Preprocess
from convscope.model.efficientnet_lite import MBConvBlock

COMPOSITES = ["epsilon_gamma_box", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
              "epsilon_alpha2_beta1_flat", "epsilon"]
SPELLINGS = ["module", "functional", "inplace", "relu6"]
TINY = {"epsilon": 1e-12, "stabilizer": 1e-12}


class Net(nn.Module):
    """conv-act, conv + skip-act, conv/2-act, max-pool, avg-pool, dense-act, dense: 16x16 -> 4 classes.

    ``spelling`` writes the rectifiers (and the skip) as modules, functions, in place, or ReLU6.
    """

    def __init__(self, spelling: str = "module", bias: bool = False, zennit_sum: nn.Module | None = None):
        super().__init__()
        self.spelling, self.sum = spelling, zennit_sum
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=bias)
        self.conv3 = nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=bias)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Linear(12, 10, bias=bias), nn.Linear(10, 4, bias=bias)
        acts = {"module": nn.ReLU, "inplace": lambda: nn.ReLU(inplace=True), "relu6": nn.ReLU6}
        self.acts = nn.ModuleList([acts.get(spelling, nn.ReLU)() for _ in range(4)])

    def act(self, h: Tensor, i: int) -> Tensor:
        if self.spelling == "functional":
            return F.relu(h) if i % 2 else torch.relu(h)
        if self.spelling == "inplace" and i % 2:
            return h.relu_()
        return self.acts[i](h)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.conv1(x), 0)
        g = self.conv2(h)
        if self.sum is not None:
            g = self.sum(torch.stack([g, h], -1))
        elif self.spelling == "inplace":
            g += h
        else:
            g = torch.add(g, h) if self.spelling == "functional" else g + h
        h = self.act(g, 1)
        h = F.max_pool2d(self.act(self.conv3(h), 2), 2)
        return self.fc2(self.act(self.fc1(self.pool(h).flatten(1)), 3))


def make(spelling: str = "module", bias: bool = False, dtype: torch.dtype = torch.float64,
         **kw: Any) -> Model:
    torch.manual_seed(0)
    net = Net(spelling, bias, **kw).to(dtype).eval()
    if spelling == "relu6":  # larger weights: some units saturate at 6, where the gradient would drop them
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(4)
    return Model(net, preprocess=Preprocess(input_size=(16, 16)), name=f"net-{spelling}")


def inputs(model: Model, batch: int = 2) -> Tensor:
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(1)
    return model.normalize(torch.rand(batch, 3, 16, 16, generator=gen, dtype=dtype))


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("composite", COMPOSITES)
def test_relevance_is_conserved_without_biases(composite: str, spelling: str) -> None:
    model = make(spelling)
    x, target = inputs(model), [1, 3]
    relevance = LRP(model, composite=composite, **TINY)(x, target)
    assert relevance.shape == x.shape and relevance.dtype == torch.float64
    logits = model(x)[[0, 1], target]
    if spelling == "relu6":
        assert (model.net.conv1(x) > 6).any()  # the cap is exercised
    torch.testing.assert_close(relevance.sum((1, 2, 3)), logits, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("composite", ["epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_module_functional_and_inplace_rectifiers_give_the_same_map(composite: str) -> None:
    models = [make(s, bias=True) for s in SPELLINGS[:3]]
    maps = [LRP(model, composite=composite)(inputs(model), 2) for model in models]
    torch.testing.assert_close(maps[1], maps[0], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(maps[2], maps[0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("spelling", ["module", "functional", "inplace"])
def test_lrp0_equals_gradient_times_input_with_biases(spelling: str) -> None:
    """Montavon et al. 2019 Sec. 10.2.1: on a ReLU network LRP-0 is gradient x input, biases or not."""
    model = make(spelling, bias=True)
    x = inputs(model).requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[:, 2].sum(), x)
    relevance = LRP(model, composite="epsilon", **TINY)(x.detach(), 2)
    torch.testing.assert_close(relevance, grad * x.detach(), rtol=1e-7, atol=1e-10)


def _dense_reference(rule: str, x: Tensor, w: Tensor, b: Tensor, r: Tensor, eps: float) -> Tensor:
    """Each rule written from its formula over the contributions c_kj = x_j w_kj (B, K, J)."""
    c = x[:, None, :] * w[None]
    z = c.sum(-1) + b
    pos, neg = c.clamp(min=0), c.clamp(max=0)
    zp, zn = pos.sum(-1) + b.clamp(min=0), neg.sum(-1) + b.clamp(max=0)
    if rule == "epsilon":
        share = c / stabilize(z, eps)[..., None]
    elif rule in ("zplus", "alpha_beta"):
        alpha, beta = (1.0, 0.0) if rule == "zplus" else (2.0, 1.0)
        share = alpha * pos / stabilize(zp, eps)[..., None] - beta * neg / stabilize(zn, eps)[..., None]
    elif rule == "gamma":  # z > 0: (c + g c+) / (z + g z+); z < 0: (c + g c-) / (z + g z-)
        up = (c + 0.25 * pos) / stabilize(z + 0.25 * zp, eps)[..., None]
        down = (c + 0.25 * neg) / stabilize(z + 0.25 * zn, eps)[..., None]
        share = torch.where((z > 0)[..., None], up, 0) + torch.where((z < 0)[..., None], down, 0)
    elif rule == "zbox":
        low, high = -2.0, 3.0
        parts = c - low * w.clamp(min=0)[None] - high * w.clamp(max=0)[None]
        share = parts / stabilize(parts.sum(-1), eps)[..., None]
    else:  # flat
        share = torch.ones_like(c) / stabilize(torch.full_like(z, c.shape[-1]), eps)[..., None]
    return (share * r[..., None]).sum(1)


RULES = {"epsilon": Epsilon(1e-6), "zplus": ZPlus(), "alpha_beta": AlphaBeta(2, 1), "gamma": Gamma(0.25),
         "zbox": ZBox(-2.0, 3.0), "flat": Flat()}


@pytest.mark.parametrize("signed", [True, False], ids=["signed-input", "rectified-input"])
@pytest.mark.parametrize("name", list(RULES))
def test_each_rule_matches_its_formula_on_a_dense_layer(name: str, signed: bool) -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    x = x.clamp(-2, 3) if signed else x.abs()
    w, b, r = (torch.randn(*shape, generator=gen, dtype=torch.float64) for shape in ((5, 7), (5,), (3, 5)))
    out, back = RULES[name].forward(LayerCall(F.linear, x, w, b, nonneg=not signed))
    torch.testing.assert_close(out, F.linear(x, w, b))
    torch.testing.assert_close(back(r), _dense_reference(name, x, w, b, r, 1e-6), rtol=1e-9, atol=1e-12)


def test_composite_parts_and_layer_names_can_be_replaced() -> None:
    model, x = make("module", bias=True), inputs(make("module"))
    plus = LRP(model, composite="epsilon_plus")(x, 1)
    refined = LRP(model, rules={"first": "zplus", "conv": ZPlus(), "linear": "epsilon"})(x, 1)
    torch.testing.assert_close(refined, plus, rtol=0, atol=0)
    flat_first = LRP(model, composite="epsilon_plus_flat")(x, 1)
    by_name = LRP(model, composite="epsilon_plus", rules={"conv1": Flat()})(x, 1)
    torch.testing.assert_close(by_name, flat_first, rtol=0, atol=0)


def test_bad_options_raise_clear_errors() -> None:
    model = make()
    with pytest.raises(BadArgument, match="composite 'epsilon_gama_box'"):
        build_method("lrp", model, composite="epsilon_gama_box")
    with pytest.raises(BadArgument, match="rule 'gama'"):
        LRP(model, rules={"conv": "gama"})
    with pytest.raises(BadLayer, match="conv1"):
        LRP(model, rules={"conv_1": "flat"})
    with pytest.raises(BadArgument, match="alpha - beta = 1"):
        LRP(model, composite="epsilon_alpha2_beta1", alpha=3.0, beta=1.0)
    info = get_method("lrp")
    assert info.family == "decomposition" and info.signed and not info.needs_layer


class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)), inplace=True)
        h = F.relu(self.bn2(self.conv2(h))) + h
        return self.fc(h.mean((2, 3)))


def test_batch_norm_fold_leaves_the_model_alone_and_keeps_its_function() -> None:
    torch.manual_seed(0)
    net = BNNet().double().train()
    for _ in range(3):  # non-trivial running statistics
        net(torch.randn(8, 3, 10, 10, dtype=torch.float64) * 2 + 1)
    net.conv2.weight.requires_grad_(False)
    model = Model(net, preprocess=Preprocess(input_size=(10, 10)))
    state = copy.deepcopy(net.state_dict())
    def flags() -> list[tuple[bool, list[bool]]]:
        return [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in net.modules()]

    before = flags()
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    method = LRP(model, composite="epsilon", **TINY)
    relevance = method(x, 1)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert flags() == before
    assert all(p.grad is None for p in net.parameters())
    folded = method.folded(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    net.eval()
    torch.testing.assert_close(folded(x), net(x), rtol=1e-10, atol=1e-12)  # the same logits
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(xg)[:, 1].sum(), xg)  # LRP-0 of the folded net = G x I of ours
    torch.testing.assert_close(relevance, grad * x, rtol=1e-7, atol=1e-10)
    with torch.no_grad():  # changed weights: the cached fold is remade
        net.conv1.weight.mul_(-1)
    torch.testing.assert_close(method(x, 1), LRP(model, composite="epsilon", **TINY)(x, 1))


def import_zennit() -> Any:
    """zennit, or a skip; its import of torchvision (only for torchvision canonizers) is stubbed."""
    stub: dict[str, types.ModuleType] = {}
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or installed but broken against this torch build (RuntimeError)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            sys.modules.pop(name)
        names = ("torchvision", "torchvision.models", "torchvision.models.resnet")
        stub = {n: types.ModuleType(n) for n in names}
        stub["torchvision.models.resnet"].Bottleneck = type("Bottleneck", (nn.Module,), {})
        stub["torchvision.models.resnet"].BasicBlock = type("BasicBlock", (nn.Module,), {})
    missing = [n for n in stub if n not in sys.modules]
    sys.modules.update({n: stub[n] for n in missing})
    try:
        return pytest.importorskip("zennit")
    finally:
        for n in missing:
            sys.modules.pop(n, None)


def zennit_relevance(zennit: Any, net: nn.Module, composite: Any, x: Tensor, target: list[int]) -> Tensor:
    import zennit.attribution

    with zennit.attribution.Gradient(model=net, composite=composite) as attributor:
        _, relevance = attributor(x, lambda out: torch.eye(out.shape[1])[target] * out)
    return relevance


def pearson(a: Tensor, b: Tensor) -> Tensor:
    return torch.stack([torch.corrcoef(torch.stack([u.flatten(), v.flatten()]))[0, 1] for u, v in zip(a, b)])


@pytest.mark.parametrize("composite", COMPOSITES)
def test_agrees_with_zennit_on_a_small_network_with_biases(composite: str) -> None:
    zennit = import_zennit()
    from zennit import composites as zc
    from zennit.rules import Epsilon as ZEpsilon
    from zennit.types import Convolution

    ours = make(bias=True, dtype=torch.float32)
    twin = make(bias=True, dtype=torch.float32, zennit_sum=zennit.layer.Sum())
    x, target = inputs(ours, 3), [0, 2, 3]
    low, high = ours.normalize(torch.zeros(1, 3, 16, 16)), ours.normalize(torch.ones(1, 3, 16, 16))
    theirs = {"epsilon_gamma_box": lambda: zc.EpsilonGammaBox(low=low, high=high),
              "epsilon": lambda: zc.LayerMapComposite([*zc.layer_map_base(), (Convolution, ZEpsilon()),
                                                       (nn.Linear, ZEpsilon())])}
    ref = theirs.get(composite, lambda: zc.COMPOSITES[composite]())()
    expected = zennit_relevance(zennit, twin.net, ref, x, target)
    got = LRP(ours, composite=composite)(x, target)
    assert (pearson(got, expected) >= 0.99).all()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


def test_agrees_with_zennit_on_the_embedded_model(lite0: Model) -> None:
    """EpsilonGammaBox with zennit's BN merge and its Sum layer at the skips (96x96 to stay fast)."""
    zennit = import_zennit()
    from zennit.canonizers import AttributeCanonizer, SequentialMergeBatchNorm
    from zennit.composites import EpsilonGammaBox

    def forward(block: MBConvBlock, x: Tensor) -> Tensor:
        h = block._relu0(block._bn0(block._expand_conv(x))) if block.has_expand else x
        h = block._bn2(block._project_conv(block._relu1(block._bn1(block._depthwise_conv(h)))))
        return block.canonizer_sum(torch.stack([h, x], dim=-1))

    def skips(name: str, module: nn.Module) -> dict[str, Any] | None:
        if isinstance(module, MBConvBlock) and module.skip:
            return {"forward": forward.__get__(module), "canonizer_sum": zennit.layer.Sum()}
        return None

    image = F.interpolate(load_image("sample:cat")[None], size=(96, 96), mode="bilinear", antialias=True)
    x = lite0.normalize(image)
    low, high = lite0.normalize(torch.zeros_like(x)), lite0.normalize(torch.ones_like(x))
    canon = [SequentialMergeBatchNorm(), AttributeCanonizer(skips)]
    twin = copy.deepcopy(lite0.net).eval()
    expected = zennit_relevance(zennit, twin, EpsilonGammaBox(low=low, high=high, canonizers=canon), x, [285])
    got = LRP(lite0)(x, 285)
    assert pearson(got, expected).item() >= 0.99


def test_embedded_model_cat_is_explained_by_the_cat(lite0: Model) -> None:
    """Finite maps; with biases (folded BN) the sum is a small fraction of the logit (~1.5% here).

    Rows: cat (left half) + espresso (right half) for 285 and for 967, then sample:cat for 285.
    Each class's positive relevance lies mostly on its own half (measured: 94% of the cat's on
    the left, 86% of the espresso's on the right).
    """
    both = load_image("sample:cat_and_coffee")
    x = lite0.preprocess([both, both, load_image("sample:cat")])
    target = [285, 967, 285]
    relevance = LRP(lite0)(x, target)
    assert relevance.shape == (3, 3, 224, 224) and torch.isfinite(relevance).all()
    with torch.no_grad():
        logits = lite0(x)[[0, 1, 2], target]
    fraction = relevance.sum((1, 2, 3)) / logits
    assert ((fraction > 0) & (fraction < 1)).all(), fraction
    positive = relevance[:2].sum(1).clamp(min=0)
    left = positive[:, :, :112].sum((1, 2)) / positive.sum((1, 2))
    assert left[0] > 0.75 and left[1] < 0.25, left


# ---- smooth activations, layers without a relevance rule, stabilizers against the signal ----------

SMOOTH = {
    "nn.Tanh": nn.Tanh,
    "nn.Sigmoid": nn.Sigmoid,
    "torch.tanh": lambda: torch.tanh,
    "Tensor.sigmoid_": lambda: Tensor.sigmoid_,
    "nn.SiLU(inplace)": lambda: nn.SiLU(inplace=True),
    "nn.GELU": nn.GELU,
}


class SmoothNet(nn.Module):
    """conv-act, conv-act, GAP, dense-act, dense, with one smooth activation spelled one way."""

    def __init__(self, act: str, bias: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.Conv2d(8, 8, 3, bias=bias)
        self.fc1, self.fc2 = nn.Linear(8, 6, bias=bias), nn.Linear(6, 4, bias=bias)
        self.pool = nn.AdaptiveAvgPool2d(1)  # a module: zennit's Norm rule sees it
        acts = [SMOOTH[act]() for _ in range(3)]
        self.mods = nn.ModuleList(a for a in acts if isinstance(a, nn.Module))
        self.acts = acts

    def forward(self, x: Tensor) -> Tensor:
        h = self.acts[1](self.conv2(self.acts[0](self.conv1(x) * 1.0)))
        return self.fc2(self.acts[2](self.fc1(self.pool(h).flatten(1))))


@pytest.mark.parametrize("act", list(SMOOTH))
def test_relevance_is_conserved_through_smooth_activations_with_the_epsilon_rule(act: str) -> None:
    """Relevance passes through tanh/sigmoid/SiLU/GELU unchanged (zennit's Pass): with LRP-eps,
    no biases and a tiny epsilon the input relevance sums to the logit; the gradient would not."""
    model = Model(SmoothNet(act).double().eval(), preprocess=Preprocess(input_size=(16, 16)))
    x, target = inputs(model), [1, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        relevance = LRP(model, composite="epsilon", **TINY)(x, target)
    with torch.no_grad():
        logits = model(x)[[0, 1], target]
    assert ((relevance.sum((1, 2, 3)) - logits).abs() < 1e-4 * logits.abs()).all()
    xg = x.clone().requires_grad_(True)  # not vacuous: gradient x input misses the logit
    (grad,) = torch.autograd.grad(model(xg)[[0, 1], target].sum(), xg)
    assert ((grad * x).sum((1, 2, 3)) - logits).abs().max() > 1e-2 * logits.abs().min()


def test_agrees_with_zennit_through_tanh_and_sigmoid() -> None:
    zennit = import_zennit()
    from zennit import composites as zc
    from zennit.rules import Epsilon as ZEpsilon
    from zennit.types import Convolution

    class TanhSigmoid(SmoothNet):
        def __init__(self) -> None:
            super().__init__("nn.Tanh", bias=True)
            self.mods[1] = nn.Sigmoid()
            self.acts = list(self.mods)

    ours = Model(TanhSigmoid().eval(), preprocess=Preprocess(input_size=(16, 16)))
    x, target = inputs(ours, 3), [0, 2, 3]
    rules = [(Convolution, ZEpsilon()), (nn.Linear, ZEpsilon())]
    composite = zc.LayerMapComposite([*zc.layer_map_base(), *rules])
    expected = zennit_relevance(zennit, copy.deepcopy(ours.net), composite, x, target)
    got = LRP(ours, composite="epsilon")(x, target)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


class Breaker(nn.Module):
    """conv -> relu -> a layer without an LRP rule (``block``) -> GAP -> linear."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.kind, self.conv, self.fc = kind, nn.Conv2d(3, 8, 3), nn.Linear(8, 2)
        self.block: nn.Module = nn.LayerNorm([8, 6, 6]) if kind == "layernorm" else nn.MultiheadAttention(
            8, 2, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv(x))
        if self.kind == "attention":
            seq = h.flatten(2).transpose(1, 2)
            h = self.block(seq, seq, seq, need_weights=False)[0].transpose(1, 2)
        else:
            h = self.block(h)
        return self.fc(h.flatten(2).mean(2))


@pytest.mark.parametrize("kind, op", [("layernorm", "layer_norm"),
                                      ("attention", "multi_head_attention_forward")])
def test_a_layer_that_breaks_conservation_is_named_with_its_gap(kind: str, op: str) -> None:
    model = Model(Breaker(kind).eval(), preprocess=Preprocess(input_size=(8, 8)), name=kind)
    x = model.normalize(torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)))
    named = rf"not conserved on '{kind}'.*'block' \({op}\) [-+][0-9.e+-]+ \(\d+% of the target score\)"
    with pytest.warns(UserWarning, match=named):
        LRP(model, composite="epsilon")(x, 1)


class Shrinking(nn.Module):
    """Bias-free conv/dense stack with weights scaled by 1e-3: outputs fall to ~1e-9 at the end."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.convs = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(),
                                   nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU())
        self.fc = nn.Linear(8, 4, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.mul_(1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.convs(x).mean((2, 3)))


def test_a_stabilizer_that_swallows_the_signal_is_reported_and_relative_ones_fix_it() -> None:
    model = Model(Shrinking().double().eval(), preprocess=Preprocess(input_size=(8, 8)), name="shrinking")
    gen = torch.Generator().manual_seed(1)
    x = model.normalize(torch.rand(2, 3, 8, 8, generator=gen, dtype=torch.float64))
    with torch.no_grad():
        logits = model(x)[:, 1]
    assert logits.abs().max() < 1e-6  # the scale of EfficientNet-B0's logits at random init
    with pytest.warns(UserWarning, match=r"stabilizer 1e-06 is not small against the outputs of layer 'fc'"):
        absorbed = LRP(model, composite="epsilon")(x, 1)
    assert (absorbed.sum((1, 2, 3)).abs() < 0.05 * logits.abs()).all()  # the map is ~0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        relative = LRP(model, composite="epsilon", relative_stabilizers=True, epsilon=1e-9)(x, 1)
    assert ((relative.sum((1, 2, 3)) - logits).abs() < 1e-4 * logits.abs()).all()
