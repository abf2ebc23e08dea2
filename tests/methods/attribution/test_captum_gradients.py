"""Agreement with Captum (test-only dependency) on the same inputs and settings.

Pearson r >= 0.99 per sample is the acceptance bar; where both compute the same numbers we also
check closeness. Captum runs on an eval-mode copy of each model: it does not switch modes itself,
and our fixtures must not be changed.

Guided backprop and deconvnet in Captum put backward hooks on ``nn.ReLU`` modules only. The
embedded EfficientNet-Lite0 uses ``nn.ReLU6`` (a ``Hardtanh``), so Captum silently returns its
plain gradient there; we show that, and compare with Captum where it is meaningful:

* guided: ReLU6(x) = min(ReLU(x), 6). Rewriting each ReLU6 as ``nn.ReLU`` followed by
  ``clamp(max=6)`` keeps the network's function bit for bit, and Captum's guided rule on it is
  max(R, 0) * 1[x > 0] * 1[x < 6] -- exactly guided backprop through a ReLU6, which is what we
  compute on the model as shipped.
* deconvnet: the rule ignores forward masks, so for a ReLU6 it is max(R, 0) with no cap mask;
  Captum's on the rewrite keeps the cap's mask and is a different rule. We compare on a copy
  whose ReLU6 units are replaced by ``nn.ReLU`` (another function, same architecture), which
  checks the mechanism on the embedded architecture (depthwise convs, BN, residual adds).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from convscope.data import load_image
from convscope.methods.attribution import (
    Deconvnet,
    GradientXInput,
    GuidedBackprop,
    IntegratedGradients,
    Saliency,
)
from convscope.model import Model, Preprocess, guarded

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")  # "setting hooks", "requires grad"


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Correlation per sample over all map entries, (B,)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def agree(ours: Tensor, theirs: Tensor, close: bool = True) -> None:
    theirs = theirs.detach()
    assert ours.shape == theirs.shape
    assert (pearson(ours, theirs) >= 0.99).all(), pearson(ours, theirs)
    if close:
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))


class ResidualNet(nn.Module):
    """Small CNN with max-pool and a residual add, ReLU modules (what Captum's hooks need)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.relu1, self.relu2, self.pool = nn.ReLU(), nn.ReLU(), nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = self.pool(self.relu1(self.conv1(x)))
        return self.fc(self.relu2(self.conv2(h) + h).mean((2, 3)))


@pytest.fixture(params=["tiny", "residual"])
def small(request: pytest.FixtureRequest) -> Model:
    if request.param == "tiny":
        return request.getfixturevalue("tiny")
    return Model(ResidualNet().eval(), preprocess=Preprocess(input_size=(16, 16)))


@pytest.fixture(scope="module")
def lite0_eval(lite0: Model) -> Model:
    return copy.deepcopy(lite0).eval()


@pytest.fixture(scope="module")
def cat(lite0: Model) -> Tensor:
    return lite0.preprocess(load_image("sample:cat"))


def images(batch: int = 3) -> Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(1))


TARGETS = [0, 2, 3]


def test_gradient_methods_agree_on_small_models(small: Model) -> None:
    x, reference = images(), copy.deepcopy(small).eval()
    agree(Saliency(small)(x, TARGETS),
          captum_attr.Saliency(reference).attribute(x, target=TARGETS).amax(1, keepdim=True))
    agree(GradientXInput(small)(x, TARGETS),
          captum_attr.InputXGradient(reference).attribute(x, target=TARGETS))
    baseline = small.normalize(torch.zeros_like(x))
    agree(IntegratedGradients(small, steps=20, batch_size=7, rule="gausslegendre")(x, TARGETS),
          captum_attr.IntegratedGradients(reference).attribute(
              x, baselines=baseline, target=TARGETS, n_steps=20, method="gausslegendre"))
    agree(GuidedBackprop(small)(x, TARGETS),
          captum_attr.GuidedBackprop(reference).attribute(x, target=TARGETS))
    agree(Deconvnet(small)(x, TARGETS),
          captum_attr.Deconvolution(reference).attribute(x, target=TARGETS))


def test_saliency_gradient_x_input_and_ig_agree_on_the_embedded_model(
        lite0: Model, lite0_eval: Model, cat: Tensor) -> None:
    agree(Saliency(lite0)(cat, 285),
          captum_attr.Saliency(lite0_eval).attribute(cat, target=285).amax(1, keepdim=True))
    agree(GradientXInput(lite0)(cat, 285),
          captum_attr.InputXGradient(lite0_eval).attribute(cat, target=285))
    baseline = lite0.normalize(torch.zeros_like(cat))
    ours = IntegratedGradients(lite0, steps=8, batch_size=8, rule="gausslegendre")(cat, 285)
    theirs = captum_attr.IntegratedGradients(lite0_eval).attribute(
        cat, baselines=baseline, target=285, n_steps=8, method="gausslegendre", internal_batch_size=8)
    agree(ours, theirs)


class ReLUThenCap(nn.Module):
    """min(ReLU(x), 6) == ReLU6(x), with the ReLU as an ``nn.ReLU`` module Captum can hook."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x).clamp(max=6.0)


def replace_relu6(model: Model, make: type[nn.Module]) -> Model:
    copied = copy.deepcopy(model).eval()
    for module in list(copied.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(module, name, make())
    return copied


def test_captum_guided_and_deconv_on_relu6_are_the_plain_gradient(
        lite0: Model, lite0_eval: Model, cat: Tensor) -> None:
    """What Captum does with the model as shipped: no nn.ReLU to hook, so the plain gradient."""
    x = cat.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(lite0_eval(x)[:, 285].sum(), x)
    for captum_method in (captum_attr.GuidedBackprop, captum_attr.Deconvolution):
        torch.testing.assert_close(captum_method(lite0_eval).attribute(cat, target=285), plain)
    for ours in (GuidedBackprop(lite0)(cat, 285), Deconvnet(lite0)(cat, 285)):
        assert pearson(ours, plain) < 0.9


def test_guided_backprop_on_relu6_agrees_with_captum_on_the_equivalent_relu_rewrite(
        lite0: Model, cat: Tensor) -> None:
    rewrite = replace_relu6(lite0, ReLUThenCap)
    with guarded(lite0), torch.no_grad():
        torch.testing.assert_close(rewrite(cat), lite0(cat), rtol=0, atol=0)  # same function
    agree(GuidedBackprop(lite0)(cat, 285),
          captum_attr.GuidedBackprop(rewrite).attribute(cat, target=285))


def test_deconvnet_agrees_with_captum_on_the_embedded_architecture_with_relus(
        lite0: Model, cat: Tensor) -> None:
    relu_net = replace_relu6(lite0, nn.ReLU)
    theirs = captum_attr.Deconvolution(relu_net).attribute(cat, target=285)
    agree(Deconvnet(relu_net)(cat, 285), theirs)
    agree(GuidedBackprop(relu_net)(cat, 285),
          captum_attr.GuidedBackprop(relu_net).attribute(cat, target=285))
