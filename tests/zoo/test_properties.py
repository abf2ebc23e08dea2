"""The promises of the attribution methods, on real architectures with random weights.

- Integrated gradients: the attributions sum to F(x) - F(x') within 5% at 64 steps (on
  torchvision's initialization, see the test).
- DeepLIFT: summation-to-delta up to float error where every nonlinearity is a routed rectifier
  and nothing max-pools (MobileNet-V2); elsewhere it may miss, but then a warning must say so.
- LRP with the epsilon rule conserves the target logit to 1e-4 on the ReLU CNNs, in float64 on a
  copy whose biases are zero (a bias absorbs its share of relevance, so conservation is promised
  only without them; batch norms keep their scale, with mean and shift zeroed).
- Guided backprop equals the plain gradient of a copy of the model whose ReLUs, modules and
  ``F.relu`` calls alike, are replaced by a hand-written guided ReLU.
Every case also checks that the user's model comes out unharmed.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.methods.attribution import LRP, DeepLift, GuidedBackprop, IntegratedGradients
from convscope.methods.attribution.deeplift import GAP_TOLERANCE
from convscope.model import Model, guarded, select
from tests.model_safety import assert_unharmed, snapshot
from tests.zoo.conftest import Arch, finite_nonzero


@contextmanager
def unharmed(model: Model) -> Iterator[None]:
    before = snapshot(model)
    yield
    assert_unharmed(model, before)


def top1(model: Model, x: Tensor) -> Tensor:
    with guarded(model), torch.no_grad():
        return model(x).argmax(1)


IG_NEEDS_MORE_STEPS = {"squeezenet1_1": 256, "inception_v3": 1024}
"""Where 64 adaptive steps miss the 5% bound on these random inits (6% and 16% measured):
IG warns with the gap, and this many steps are complete. A known weakness of the 64-node
quadrature there, not a pass."""


def test_integrated_gradients_complete_at_64_steps(zoo_initial_model: Model, zoo_arch: Arch,
                                                   zoo_inputs: Tensor) -> None:
    """On torchvision's own initialization. With batch norms calibrated on photos (the other
    tests' models) most of these networks are chaotic: the score along the path from black to the
    photo jumps at every scale, and even 2048 trapezoid steps in float64 miss by a third on
    MobileNet-V2, so no 64-node rule can be complete there; trained networks are smooth."""
    model = zoo_initial_model
    target = top1(model, zoo_inputs)
    method = IntegratedGradients(model, steps=64)
    with unharmed(model), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        attributions = method(zoo_inputs, target)
        change = method.score_change(zoo_inputs, target)
        gap = method.completeness_gap(zoo_inputs, attributions, target)
    assert torch.isfinite(attributions).all()
    with torch.no_grad():
        level = select(model(zoo_inputs), target).abs()
    if (change.abs() <= 1e-4 * level).all():
        # the output does not measurably depend on the input: GoogLeNet's dead init (change 0),
        # ShuffleNet's (change ~4e-5 of the score, float32 rounding); there is nothing to complete
        assert (gap.abs() <= 1e-4 * level + 1e-6).all()
        return
    finite_nonzero(attributions, f"IG on {zoo_arch.name}")
    relative = float((gap.abs() / change.abs()).max())
    said = [w for w in caught if "integrated gradients misses" in str(w.message)]
    if zoo_arch.name not in IG_NEEDS_MORE_STEPS:
        assert relative < 0.05, f"IG completeness gap {100 * relative:.2f}% on {zoo_arch.name}"
        return
    # Known short of the bound at 64 steps (see IG_NEEDS_MORE_STEPS): IG must say so,
    # and more steps must close the gap.
    assert relative >= 0.05 and said, f"{zoo_arch.name}: {100 * relative:.2f}% and no warning"
    more = IntegratedGradients(model, steps=IG_NEEDS_MORE_STEPS[zoo_arch.name], batch_size=64)
    attributions = more(zoo_inputs, target)
    relative = float((more.completeness_gap(zoo_inputs, attributions, target).abs() / change.abs()).max())
    assert relative < 0.05, f"IG completeness gap {100 * relative:.2f}% on {zoo_arch.name} with more steps"


def test_deeplift_sums_to_delta_or_says_it_does_not(zoo_model: Model, zoo_arch: Arch,
                                                    zoo_inputs: Tensor) -> None:
    target = top1(zoo_model, zoo_inputs)
    method = DeepLift(zoo_model)
    with unharmed(zoo_model), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        contributions = method(zoo_inputs, target)
        delta = method.score_change(zoo_inputs, target)
        gap = method.completeness_gap(zoo_inputs, contributions, target)
    finite_nonzero(contributions, f"DeepLIFT on {zoo_arch.name}")
    assert (delta.abs() > 1e-3).all()
    relative = float((gap.abs() / delta.abs()).max())
    warned = any("DeepLIFT contributions miss" in str(w.message) for w in caught)
    if zoo_arch.deeplift_exact:
        assert relative < 1e-4 and not warned, f"summation-to-delta gap {relative:.2e} on {zoo_arch.name}"
    else:
        assert warned == (relative > GAP_TOLERANCE), (
            f"gap {100 * relative:.2f}% on {zoo_arch.name}, warning {'given' if warned else 'missing'}")


def bias_free_float64(model: Model) -> Model:
    """A float64 copy whose convolutions, linear layers and batch norms add no constant."""
    twin = copy.deepcopy(model).double()
    with torch.no_grad():
        for m in twin.modules():
            if isinstance(getattr(m, "bias", None), Tensor):
                m.bias.zero_()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
    return twin


def test_lrp_epsilon_conserves_the_logit_on_relu_cnns(zoo_model: Model, zoo_arch: Arch,
                                                      zoo_inputs: Tensor) -> None:
    if not zoo_arch.relu_only:  # LRP promises conservation only for rectifier networks
        assert zoo_arch.name in {"mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "regnet_y_400mf"}
        return
    with unharmed(zoo_model):
        twin = bias_free_float64(zoo_model)
    x = zoo_inputs.double()
    target = top1(twin, x)
    relevance = LRP(twin, composite="epsilon", epsilon=1e-12, stabilizer=1e-12)(x, target)
    with guarded(twin), torch.no_grad():
        logits = select(twin(x), target)
    finite_nonzero(relevance, f"LRP on {zoo_arch.name}")
    relative = ((relevance.sum((1, 2, 3)) - logits).abs() / logits.abs()).max()
    assert relative < 1e-4, f"LRP-epsilon conservation gap {float(relative):.2e} on {zoo_arch.name}"


class GuidedReLU(torch.autograd.Function):
    """max(x, 0) whose backward passes only positive signal, only where the unit is active; with
    ``top`` it is ReLU6 (inactive also at and above the cap)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, top: float | None) -> Tensor:
        y = x.clamp(0, top) if top is not None else x.clamp(min=0)
        ctx.save_for_backward(y)
        ctx.top = top
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (y,) = ctx.saved_tensors
        active = (y > 0) if ctx.top is None else (y > 0) & (y < ctx.top)
        return grad.clamp(min=0) * active, None


class GuidedModule(nn.Module):
    def __init__(self, top: float | None) -> None:
        super().__init__()
        self.top = top

    def forward(self, x: Tensor) -> Tensor:
        return GuidedReLU.apply(x, self.top)


def guided_copy(net: nn.Module) -> nn.Module:
    """A deep copy with every nn.ReLU / nn.ReLU6 module replaced by :class:`GuidedModule`."""
    twin = copy.deepcopy(net)
    for name, module in list(twin.named_modules()):
        if isinstance(module, (nn.ReLU, nn.ReLU6)):
            parent, _, leaf = name.rpartition(".")
            top = 6.0 if isinstance(module, nn.ReLU6) else None
            setattr(twin.get_submodule(parent) if parent else twin, leaf, GuidedModule(top))
    return twin


def guided_relu(x: Tensor, inplace: bool = False) -> Tensor:
    return GuidedReLU.apply(x, None)


def test_guided_backprop_equals_a_hand_built_guided_copy(zoo_model: Model, zoo_arch: Arch,
                                                         zoo_inputs: Tensor,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    target = top1(zoo_model, zoo_inputs)
    with unharmed(zoo_model):
        guided = GuidedBackprop(zoo_model)(zoo_inputs, target)
        twin = guided_copy(zoo_model.net).eval()
    x = zoo_inputs.clone().requires_grad_(True)
    with monkeypatch.context() as patch:  # functional ReLUs (DenseNet, GoogLeNet, Inception)
        patch.setattr(F, "relu", guided_relu)
        scores = twin(x).gather(1, target[:, None])
    (reference,) = torch.autograd.grad(scores.sum(), x)
    finite_nonzero(guided, f"guided backprop on {zoo_arch.name}")
    torch.testing.assert_close(guided, reference, rtol=1e-4, atol=1e-6 * float(reference.abs().max()))


