"""GradientSHAP and DeepLIFT-SHAP against Captum 0.9.0 (test-only) and their own promises.

GradientSHAP is a Monte Carlo estimate: ours and Captum's are run R times each (R seeds, the same
number of draws per run), and the means must agree within the sampling error measured from those
runs, SE = sqrt(var_ours / R + var_captum / R) per element: |mean difference| <= Z * SE. Captum's
draws come from numpy's and torch's global generators, ours from a seeded torch.Generator, so the
runs are independent and only the expectations can agree. Each agreement test also checks its
power: a shift of a few SE in the expectation (a wrong noise level) must fail the same bound.

DeepLIFT-SHAP is deterministic (DeepLIFT averaged over every reference), so it must equal
Captum's DeepLiftShap to float precision.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from convscope.errors import BadArgument
from convscope.methods.attribution import DeepLiftShap, GradientShap, IntegratedGradients
from convscope.methods.registry import get_method
from convscope.model import Model, Preprocess

Z = 5.0
"""Standard errors allowed per element: with a few hundred elements, a 5 SE excursion under equal
expectations has a chance of about 1e-4 (the seeds are fixed, so the test does not flake)."""
RUNS, DRAWS = 60, 4


def _net(act: type[nn.Module] = nn.ReLU, pool: type[nn.Module] = nn.MaxPool2d) -> nn.Module:
    """A small CNN with weights large enough for scores that move by units between inputs."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), act(), pool(2), nn.Conv2d(4, 4, 3, padding=1), act(),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))
    for p in net.parameters():
        nn.init.normal_(p, std=0.5)
    return net.eval()


def _model(net: nn.Module) -> Model:
    return Model(net, preprocess=Preprocess(input_size=(8, 8)), name="toy")


def _data() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(3)
    return torch.randn(2, 3, 8, 8, generator=gen), torch.randn(5, 3, 8, 8, generator=gen)


def _ours(model: Model, x: Tensor, baselines: Tensor, stdev: float) -> Tensor:
    return torch.stack([GradientShap(model, baselines=baselines, samples=DRAWS, stdev=stdev, seed=r)(x, 1)
                        for r in range(RUNS)])


def _captum(net: nn.Module, x: Tensor, baselines: Tensor, stdev: float) -> Tensor:
    from captum.attr import GradientShap as CaptumGradientShap

    runs = []
    for r in range(RUNS):
        torch.manual_seed(1000 + r)
        np.random.seed(1000 + r)
        runs.append(CaptumGradientShap(net).attribute(x, baselines, n_samples=DRAWS, stdevs=stdev, target=1))
    return torch.stack(runs).detach()


def _z(a: Tensor, b: Tensor) -> Tensor:
    """Difference of the run means in standard errors, per element (runs along dim 0)."""
    se = (a.var(0) / len(a) + b.var(0) / len(b)).sqrt()
    return (a.mean(0) - b.mean(0)) / se.clamp_min(1e-12)


def test_registered() -> None:
    assert get_method("gradient_shap").cls is GradientShap and get_method("gradient_shap").signed
    info = get_method("deeplift_shap")
    assert info.cls is DeepLiftShap and info.family == "decomposition"


def test_gradient_shap_has_captums_expectation() -> None:
    """With input noise (stdev 0.3), so that the noise's part of the expectation is checked too."""
    net = _net()
    x, baselines = _data()
    ours, theirs = _ours(_model(net), x, baselines, 0.3), _captum(net, x, baselines, 0.3)
    z = _z(ours, theirs)
    assert z.abs().max() < Z, f"largest gap {z.abs().max():.2f} SE"
    assert z.square().mean() < 2.0  # about 1 when the two expectations are the same
    # power: another baseline distribution (3 of the 5) has another expectation, and the bound sees it
    other = _z(ours, _captum(net, x, baselines[:3], 0.3))
    assert other.abs().max() > Z and other.square().mean() > 5


def test_gradient_shap_without_noise_is_the_mean_of_integrated_gradients_over_baselines() -> None:
    """E over baselines and positions of (x - x') dF(x' + a (x - x')) = mean_j IG(x, x'_j), with IG
    integrated exactly (a smooth network, 256 Gauss-Legendre nodes)."""
    model = _model(_net(nn.Tanh))
    x, baselines = _data()
    ours = _ours(model, x, baselines, 0.0)
    ig = torch.stack([IntegratedGradients(model, baseline=b[None], steps=256, rule="gausslegendre",
                                          batch_size=512)(x, 1)
                      for b in baselines]).mean(0)
    z = (ours.mean(0) - ig) / (ours.std(0) / RUNS**0.5).clamp_min(1e-12)
    assert z.abs().max() < Z and z.square().mean() < 2.0


def test_gradient_shap_is_complete_in_expectation() -> None:
    """E[sum phi] = f(x) - E[f(x')] (no noise): the mean of the runs' sums within Z standard errors."""
    net = _net()
    model = _model(net)
    x, baselines = _data()
    sums = _ours(model, x, baselines, 0.0).flatten(2).sum(2)  # (runs, B)
    with torch.no_grad():
        want = net(x)[:, 1] - net(baselines)[:, 1].mean()
    se = sums.std(0) / RUNS**0.5
    assert ((sums.mean(0) - want).abs() < Z * se).all()
    assert (se < 0.3 * want.abs()).all()  # the bound is tight enough to mean something


def test_gradient_shap_draws_do_not_depend_on_the_chunk_size() -> None:
    model = _model(_net())
    x, baselines = _data()
    a = GradientShap(model, baselines=baselines, samples=6, stdev=0.2, batch_size=5)(x, 1)
    b = GradientShap(model, baselines=baselines, samples=6, stdev=0.2, batch_size=64)(x, 1)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_deeplift_shap_equals_captum() -> None:
    """On ReLU and average pooling (Captum's 2-D max-pool rule does not sum to delta:
    test_deeplift.py), then summation to delta through max-pooling, averaged over references."""
    from captum.attr import DeepLiftShap as CaptumDeepLiftShap

    net = _net(pool=nn.AvgPool2d)
    x, baselines = _data()
    ours = DeepLiftShap(_model(net), baselines=baselines, batch_size=3)(x, 1)
    theirs = CaptumDeepLiftShap(net).attribute(x, baselines, target=1).detach()
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6 * float(theirs.abs().max()))
    for checked in (net, _net()):
        ours = DeepLiftShap(_model(checked), baselines=baselines, batch_size=3)(x, 1)
        with torch.no_grad():
            want = checked(x)[:, 1] - checked(baselines)[:, 1].mean()
        torch.testing.assert_close(ours.flatten(1).sum(1), want, rtol=1e-5, atol=1e-5)


def test_word_baselines_make_a_distribution() -> None:
    model = _model(_net())
    x, _ = _data()
    count, rows = DeepLiftShap(model, baselines="uniform", draws=3, seed=2).distribution(x)
    noise = rows(torch.tensor([0, 1, 0]), torch.tensor([0, 0, 1]))
    assert count == 3 and noise.shape == (3, 3, 8, 8)
    assert torch.equal(noise[0], noise[1]) and not torch.equal(noise[0], noise[2])  # shared, seeded
    count, rows = GradientShap(model, baselines="black").distribution(x)
    black = rows(torch.tensor([0, 1]), torch.tensor([0, 0]))
    assert count == 1 and torch.equal(black, model.normalize(torch.zeros(2, 3, 8, 8)))
    one = DeepLiftShap(model, baselines=torch.zeros(3, 8, 8))(x, 1)  # one baseline shaped as an input
    assert one.shape == x.shape


@pytest.mark.parametrize("method", [GradientShap, DeepLiftShap])
@pytest.mark.parametrize("bad", [torch.zeros(4, 3, 7, 8), torch.zeros(2, 2, 3, 8, 8), torch.zeros(8, 8)])
def test_a_distribution_of_the_wrong_shape_is_one_line(method: type, bad: Tensor) -> None:
    x, _ = _data()
    with pytest.raises(BadArgument) as err:
        method(_model(_net()), baselines=bad)(x, 1)
    message = str(err.value)
    assert "\n" not in message and f"baselines of shape {tuple(bad.shape)}" in message
    assert "(K, 3, 8, 8)" in message


@pytest.mark.parametrize(("method", "option", "value"), [("gradient_shap", "draws", 5000),
                                                         ("gradient_shap", "stdev", -1.0),
                                                         ("deeplift_shap", "baselines", "zeros"),
                                                         ("kernel_shap", "samples", 0)])
def test_web_and_json_options_are_bounded(method: str, option: str, value: object) -> None:
    from convscope.methods.option_specs import check_options

    with pytest.raises(BadArgument) as err:
        check_options(method, {option: value})
    assert "\n" not in str(err.value) and option in str(err.value)
