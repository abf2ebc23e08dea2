"""The sums the attribution methods promise, or their warnings, on timm's architectures.

On each architecture of tests/zoo/timm_archs.py (random weights, batch norms calibrated, the cat
and the espresso at the zoo's small side), every property is computed here from the model's own
forward passes, not read from the method:

- integrated gradients: sum of attributions = F(x) - F(black) within 5%, or IG's warning gives
  the gap (8 adaptive steps: the warning is what is tested where they fall short);
- DeepLIFT: sum of contributions = t(x) - t(x_ref) within its tolerance, or its warning gives the
  gap;
- LRP: on a bias-free float64 copy of the architectures built from conv/dense layers, batch
  norms, elementwise activations, adds, concatenations and pooling (``lrp_conserves``), the map
  sums to the logit to 1e-6 (and two that do not conserve warn); on every architecture as the
  user has it (epsilon rule), a map whose sum misses the
  logit by more than LRP's tolerance (or is not finite) comes with a warning naming a layer;
- guided backprop: it warns exactly when its map is the plain gradient (no rectifier ran), and
  never on a network with a ReLU module.
Each call leaves the model unharmed (tests/model_safety.py).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor, nn

from convscope.methods.attribution import LRP, DeepLift, GuidedBackprop, IntegratedGradients
from convscope.methods.attribution.deeplift import GAP_TOLERANCE as DEEPLIFT_TOLERANCE
from convscope.methods.attribution.gradients import COMPLETENESS_TOLERANCE
from convscope.methods.attribution.lrp.method import GAP_TOLERANCE as LRP_GAP_TOLERANCE
from convscope.methods.attribution.lrp.method import TOTAL_TOLERANCE
from convscope.model import Model, guarded, select
from tests.model_safety import assert_unharmed, snapshot
from tests.zoo.test_properties import bias_free_float64
from tests.zoo.timm_archs import TIMM, TimmArch

IG_STEPS = 8
BAND = 0.1
"""Relative margin around a tolerance where either answer (warned or not) is accepted: the
method's own scale differs from the test's by float rounding and a 1e-3 floor."""


@contextmanager
def said(model: Model) -> Iterator[list[str]]:
    """The warnings given inside, as text; the model must come out unharmed."""
    before = snapshot(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        messages: list[str] = []
        yield messages
        messages.extend(str(w.message) for w in caught)
    assert_unharmed(model, before)


def scores(model: Model, x: Tensor, target: Tensor) -> Tensor:
    with guarded(model), torch.no_grad():
        return select(model(x), target)


def top1(model: Model, x: Tensor) -> Tensor:
    with guarded(model), torch.no_grad():
        return model(x).argmax(1)


def percent_said(messages: list[str], opening: str) -> float | None:
    """The percentage a warning starting with ``opening`` gives, or None without one."""
    for text in messages:
        if text.startswith(opening):
            return float(re.search(r"by ([0-9.]+)%", text).group(1))  # type: ignore[union-attr]
    return None


def relative_gap(attributions: Tensor, high: Tensor, low: Tensor) -> float:
    """The worst sample's |sum of attributions - (high - low)|, relative to the change (with a
    floor of 1e-3 of the scores, for a change near zero)."""
    change = high - low
    gap = (attributions.flatten(1).sum(1).double() - change).abs()
    return float((gap / (change.abs() + 1e-3 * (high.abs() + low.abs()))).max())


def warned_or_within(relative: float, stated: float | None, tolerance: float, what: str) -> None:
    """Within the tolerance and silent, or beyond it and warned with about the measured gap."""
    if relative > tolerance * (1 + BAND):
        assert stated is not None, f"{what}: gap {100 * relative:.2f}% and no warning"
        assert abs(stated - 100 * relative) <= 0.1 + 0.05 * 100 * relative, (
            f"{what}: warning says {stated}%, measured {100 * relative:.2f}%")
    elif relative < tolerance * (1 - BAND):
        assert stated is None, f"{what}: warned of {stated}% where the gap is {100 * relative:.2f}%"


def test_integrated_gradients_complete_or_warned(timm_model: Model, timm_arch: TimmArch,
                                                 timm_inputs: Tensor) -> None:
    model, x = timm_model, timm_inputs
    target = top1(model, x)
    with said(model) as messages:
        attributions = IntegratedGradients(model, steps=IG_STEPS)(x, target)
    assert torch.isfinite(attributions).all(), f"IG on {timm_arch.name}: non-finite map"
    f_x = scores(model, x, target).double()
    f_base = scores(model, IntegratedGradients(model).baselines(x), target).double()  # black
    relative = relative_gap(attributions, f_x, f_base)
    print(f"IG {timm_arch.family}: {100 * relative:.2f}%")
    stated = percent_said(messages, "integrated gradients misses")
    warned_or_within(relative, stated, COMPLETENESS_TOLERANCE, f"IG on {timm_arch.name}")


def test_deeplift_sums_to_delta_or_warned(timm_model: Model, timm_arch: TimmArch,
                                          timm_inputs: Tensor) -> None:
    model, x = timm_model, timm_inputs
    target = top1(model, x)
    method = DeepLift(model)
    with said(model) as messages:
        contributions = method(x, target)
    assert torch.isfinite(contributions).all(), f"DeepLIFT on {timm_arch.name}: non-finite map"
    t_x, t_ref = scores(model, x, target).double(), scores(model, method.references(x), target).double()
    relative = relative_gap(contributions, t_x, t_ref)
    print(f"DeepLIFT {timm_arch.family}: {100 * relative:.3f}%")
    stated = percent_said(messages, "DeepLIFT contributions miss")
    warned_or_within(relative, stated, DEEPLIFT_TOLERANCE, f"DeepLIFT on {timm_arch.name}")


def layer_named(messages: list[str], method: LRP, x: Tensor) -> bool:
    """Some LRP warning quotes a layer by name: a module of the user's network or of the canonized
    copy LRP runs (RepVGG's merged ``reparam_conv``), or a functional call ("conv2d call 5")."""
    nets = (method.model.net, method.folded(x))
    names = {name for net in nets for name, _ in net.named_modules() if name}
    return any(name in names or re.fullmatch(r"\w+ call \d+", name)
               for text in messages if "LRP" in text for name in re.findall(r"'([^']+)'", text))


def test_lrp_misses_the_logit_only_with_a_warning(timm_model: Model, timm_arch: TimmArch,
                                                 timm_inputs: Tensor) -> None:
    model, x = timm_model, timm_inputs
    target = top1(model, x)
    for composite in ("epsilon",):  # the rule whose biases absorb most; the composites warn alike
        method = LRP(model, composite=composite)
        with said(model) as messages:
            relevance = method(x, target)
        logit = scores(model, x, target).double()
        total = relevance.flatten(1).sum(1).double()
        miss = ((total - logit).abs() / logit.abs()).nan_to_num(float("inf"))
        print(f"LRP {composite} {timm_arch.family}: miss {[f'{m:.3g}' for m in miss.tolist()]}")
        if not torch.isfinite(relevance).all() or bool((miss > TOTAL_TOLERANCE).any()):
            assert layer_named(messages, method, x), (
                f"LRP ({composite}) on {timm_arch.name}: the map sums to {total.tolist()} for logits "
                f"{logit.tolist()} and no warning names a layer: {messages}")


BIAS_FREE = [family for family, arch in TIMM.items() if arch.lrp_conserves] + ["nf-resnet", "convnext"]
"""The families promised to conserve once biases are gone, and two that are not (constant
multiplications, a layer scale), which must warn. The other families' bias-free copies are left
out for time: their gating or attention breaks the sum by design, and they warn as these do."""


@pytest.mark.parametrize("timm_arch", BIAS_FREE, indirect=True)
def test_lrp_conserves_without_biases(timm_model: Model, timm_arch: TimmArch,
                                      timm_inputs: Tensor) -> None:
    twin = bias_free_float64(timm_model)
    x = timm_inputs.double()
    target = top1(twin, x)
    method = LRP(twin, composite="epsilon", epsilon=1e-12, stabilizer=1e-12)
    with said(twin) as messages:
        relevance = method(x, target)
    logit = scores(twin, x, target)
    relative = float(((relevance.sum((1, 2, 3)) - logit).abs() / logit.abs()).max())
    print(f"LRP bias-free {timm_arch.family}: {relative:.2e}")
    assert torch.isfinite(relevance).all() or layer_named(messages, method, x)
    if timm_arch.lrp_conserves:
        assert relative < 1e-6, f"LRP-epsilon conservation gap {relative:.2e} on {timm_arch.name}"
    elif relative > LRP_GAP_TOLERANCE:  # a layer without a rule, or a stabilizer that swallows
        assert layer_named(messages, method, x), (
            f"LRP-epsilon misses the logit by {100 * relative:.1f}% on {timm_arch.name} without "
            f"biases, and no warning names a layer: {messages}")


def test_guided_backprop_warns_exactly_when_it_is_the_gradient(timm_model: Model, timm_arch: TimmArch,
                                                               timm_inputs: Tensor) -> None:
    model, x = timm_model, timm_inputs
    target = top1(model, x)
    with said(model) as messages:
        guided = GuidedBackprop(model)(x, target)
    warned = any("no rectifier" in text for text in messages)
    xg = x.clone().requires_grad_(True)
    with guarded(model):
        (gradient,) = torch.autograd.grad(select(model(xg), target).sum(), xg)
    plain = torch.equal(guided, gradient)
    relu = any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in model.net.modules())
    print(f"guided {timm_arch.family}: warned {warned} plain {plain} relu-module {relu}")
    assert torch.isfinite(guided).all()
    assert warned == plain, f"guided backprop on {timm_arch.name}: warned {warned}, plain gradient {plain}"
    assert not (relu and warned)
