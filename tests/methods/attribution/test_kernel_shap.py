"""KernelSHAP: exact Shapley values where they are known, efficiency always, Captum's expectation.

* Exact: on a nonlinear model of 5 features every coalition is enumerated and the result must be
  the Shapley values computed by brute force from their definition (Shapley 1953,
  phi_i = sum_S |S|! (M - |S| - 1)! / M! [f(S + i) - f(S)]); on a model linear in superpixel
  presence, any sampled set of coalitions gives phi_s = sum over the superpixel of w (x - x').
* Efficiency: sum_i phi_i = f(x) - f(every group off), to float rounding, with sampled coalitions
  on a nonlinear CNN.
* Captum 0.9.0's KernelShap (test-only) draws coalitions the same way from torch's global
  generator; R runs of each, and the run means must agree within Z measured standard errors.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from convscope.errors import BadArgument
from convscope.methods.attribution import KernelShap
from convscope.methods.attribution.kernel_shap import all_coalitions, shapley_kernel
from convscope.methods.registry import get_method
from convscope.model import Model, Preprocess
from tests.conftest import TinyCNN

Z = 5.0
"""Standard errors allowed per feature (8 features; seeds fixed, so no flakes)."""
RUNS, SAMPLES = 40, 40


class Interactions(nn.Module):
    """A nonlinear table model: products, a ReLU and a max, so Shapley values are not the terms."""

    def forward(self, x: Tensor) -> Tensor:
        a = x[:, 0] * x[:, 1] + torch.relu(x[:, 2] - x[:, 3]) + torch.maximum(x[:, 4], x[:, 0])
        a = a + 0.5 * x[:, 1]
        if x.shape[1] > 5:
            a = a + torch.tanh(x[:, 5:].sum(1)) * x[:, 2] + x[:, 5:].square().sum(1)
        return torch.stack([a, -a], 1)


def _table(features: int) -> tuple[Model, Tensor]:
    model = Model(Interactions().eval(), preprocess=Preprocess(input_size=(features, features)), name="table")
    return model, torch.randn(2, features, generator=torch.Generator().manual_seed(5))


def _brute_force_shapley(f, x: Tensor, baseline: Tensor) -> Tensor:
    """Shapley values of f(x with the features of S kept, baseline elsewhere), by definition."""
    m = x.shape[1]
    phi = torch.zeros_like(x, dtype=torch.float64)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for r in range(m):
            for s in itertools.combinations(others, r):
                weight = math.factorial(r) * math.factorial(m - r - 1) / math.factorial(m)
                keep = torch.zeros(m, dtype=torch.bool)
                keep[list(s)] = True
                without = torch.where(keep, x, baseline)
                keep[i] = True
                phi[:, i] += weight * (f(torch.where(keep, x, baseline)) - f(without)).double()
    return phi


def test_registered_as_signed_perturbation() -> None:
    info = get_method("kernel_shap")
    assert (info.cls, info.family, info.signed, info.needs_layer) == (KernelShap, "perturbation", True, False)


def test_the_kernel_and_the_enumeration() -> None:
    rows = all_coalitions(4)
    assert rows.shape == (14, 4) and len({tuple(r.tolist()) for r in rows}) == 14
    # pi(z') = (M - 1) / (C(M, |z'|) |z'| (M - |z'|)): M = 4, |z'| = 1 -> 3 / (4 * 3) = 1/4
    assert torch.allclose(shapley_kernel(torch.tensor([1, 2, 3]), 4),
                          torch.tensor([1 / 4, 3 / (6 * 4), 1 / 4], dtype=torch.float64))


@pytest.mark.parametrize("baseline", ["mean", "tensor"])
def test_exact_shapley_values_when_every_coalition_is_enumerated(baseline: str) -> None:
    model, x = _table(5)
    off = torch.tensor([0.3, -1.0, 0.5, 0.0, 2.0]) if baseline == "tensor" else torch.zeros(5)
    phi = KernelShap(model, samples=30, baseline=off if baseline == "tensor" else "mean")(x, 0)
    want = _brute_force_shapley(lambda z: model.net(z)[:, 0], x, off)
    torch.testing.assert_close(phi.double(), want, rtol=1e-5, atol=1e-5)


def test_exact_on_a_model_linear_in_superpixels_from_sampled_coalitions() -> None:
    """f = sum(W * x): each superpixel adds its own sum(W * (x - x')), whatever else is on."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(1, 3, 16, 16, generator=gen)

    class RegionSum(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            s = (x * weight).flatten(1).sum(1)
            return torch.stack([s, torch.zeros_like(s)], 1)

    model = Model(RegionSum().eval(), preprocess=Preprocess(input_size=(16, 16)))
    x = torch.randn(2, 3, 16, 16, generator=gen)
    grid = (torch.arange(16)[:, None] // 4) * 4 + torch.arange(16)[None] // 4  # 16 squares of 4x4
    result = KernelShap(model, samples=60, baseline="mean").explain_superpixels(x, 0, segments=grid)
    assert 60 < 2**16 - 2  # the coalitions were sampled, not enumerated
    want = torch.zeros(2, 16, dtype=torch.float64).index_add_(1, grid.flatten(),
                                                              (x * weight).sum(1).flatten(1).double())
    torch.testing.assert_close(result.weights, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(result.intercept, torch.zeros(2, dtype=torch.float64), atol=1e-5, rtol=0)


def test_efficiency_holds_exactly_with_sampled_coalitions() -> None:
    torch.manual_seed(0)
    model = Model(TinyCNN().eval(), preprocess=Preprocess(input_size=(16, 16)))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    grid = (torch.arange(16)[:, None] // 4) * 4 + torch.arange(16)[None] // 4
    result = KernelShap(model, samples=50, baseline="black").explain_superpixels(x, 2, segments=grid)
    with torch.no_grad():
        f_x = model(x)[:, 2].double()
        f_off = model(model.normalize(torch.zeros_like(x)))[:, 2].double()
    torch.testing.assert_close(result.weights.sum(1), f_x - f_off, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(result.intercept, f_off, rtol=1e-6, atol=1e-6)
    pixel_map = KernelShap(model, samples=50, baseline="black")(x, 2)  # superpixels of its own
    assert pixel_map.shape == (2, 1, 16, 16) and (pixel_map != 0).any()


def _captum_runs(net: nn.Module, x: Tensor, baseline: float) -> Tensor:
    from captum.attr import KernelShap as CaptumKernelShap

    runs = []
    for r in range(RUNS):
        torch.manual_seed(2000 + r)
        # Captum's n_samples counts its all-on and all-off rows, which we score on top of ours
        runs.append(CaptumKernelShap(net).attribute(x, baselines=baseline, target=0, n_samples=SAMPLES + 2))
    return torch.stack(runs).detach().double()


def test_has_captums_expectation() -> None:
    model, x = _table(8)
    x = x[:1]
    assert SAMPLES < 2**8 - 2  # sampled, as Captum samples
    ours = torch.stack([KernelShap(model, samples=SAMPLES, seed=r)(x, 0) for r in range(RUNS)]).double()
    theirs = _captum_runs(model.net, x, 0.0)
    se = (ours.var(0) / RUNS + theirs.var(0) / RUNS).sqrt()
    z = (ours.mean(0) - theirs.mean(0)) / se
    assert z.abs().max() < Z, f"largest gap {z.abs().max():.2f} SE"
    other = (ours.mean(0) - _captum_runs(model.net, x, 0.5).mean(0)) / se  # power: another baseline
    assert other.abs().max() > 2 * Z


def test_draws_do_not_depend_on_the_chunk_size() -> None:
    model, x = _table(8)
    a = KernelShap(model, samples=30, batch_size=7)(x, 0)
    b = KernelShap(model, samples=30, batch_size=500)(x, 0)
    torch.testing.assert_close(a, b)


def test_bad_options_are_one_line() -> None:
    model, x = _table(5)
    with pytest.raises(BadArgument, match="samples"):
        KernelShap(model, samples=0)
    with pytest.raises(BadArgument) as err:
        KernelShap(model, baseline=torch.zeros(3))(x, 0)
    assert "\n" not in str(err.value) and "baseline" in str(err.value)
