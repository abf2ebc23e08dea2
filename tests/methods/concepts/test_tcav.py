"""TCAV on the planted-concept model, the CAV fit against scikit-learn, and its bad inputs."""

from __future__ import annotations

import pytest
import torch
from sklearn.linear_model import LogisticRegression

from convscope.data.planted import CUE_CLASS, class_set, concept_set, random_set
from convscope.errors import BadArgument
from convscope.methods.concepts.cav import fit_cavs
from convscope.methods.concepts.tcav import TCAVScores, tcav
from convscope.model import Model, load_model

LAYERS = ["block3", "block4"]
RUNS = 10


@pytest.fixture(scope="module")
def planted() -> Model:
    torch.set_num_threads(2)
    return load_model("digits_planted")


@pytest.fixture(scope="module")
def sets(planted: Model) -> dict[str, object]:
    """The stripes concept, a reference random set and 10 random runs, 40 held-out digits each."""
    prep = planted.preprocess
    return {"concepts": {"stripes": prep(concept_set(40).images)},
            "randoms": [prep(random_set(i, n=40).images) for i in range(RUNS + 1)]}


def run(planted: Model, sets: dict[str, object], target: int) -> TCAVScores:
    inputs = planted.preprocess(class_set(target, n=40).images)  # the class's digits, no cue
    return tcav(planted, sets["concepts"], sets["randoms"], inputs, target, LAYERS)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sevens(planted: Model, sets: dict[str, object]) -> TCAVScores:
    return run(planted, sets, CUE_CLASS)


def test_planted_cue_is_positive_and_significant_for_its_class(sevens: TCAVScores) -> None:
    assert sevens.scores.shape == (1, 2, RUNS) and sevens.random_scores.shape == (2, RUNS)
    assert (sevens.mean >= 0.9).all(), sevens.mean
    assert (sevens.corrected < 0.05).all() and sevens.positive.all(), sevens.corrected
    assert torch.allclose(sevens.corrected, (sevens.p_values * 2).clamp(max=1))  # Bonferroni, 2 tests
    assert (sevens.accuracy.mean(-1) > 0.8).all()  # the concept is linearly readable there ...
    assert (sevens.random_accuracy.mean(-1) < 0.7).all()  # ... and random vs random is not


def test_cue_is_not_positive_for_a_class_it_does_not_drive(planted: Model, sets: dict[str, object]) -> None:
    threes = run(planted, sets, 3)
    assert not threes.positive.any(), (threes.mean, threes.random_mean, threes.corrected)
    assert (threes.mean < 0.5).all()


def test_scores_are_sign_fractions_of_directional_derivatives(planted: Model, sevens: TCAVScores,
                                                               sets: dict[str, object]) -> None:
    """Eq. 2 by hand for one CAV: finite differences of the logit along it, at block4."""
    x = planted.preprocess(class_set(CUE_CLASS, n=40).images)
    cav = sevens.cavs["block4"][0, 3]
    with torch.no_grad():
        h = planted.net.block4(planted.net.block3(planted.net.pool2(planted.net.block2(
            planted.net.pool1(planted.net.block1(x))))))

        def logit(acts: torch.Tensor) -> torch.Tensor:
            return planted.net.fc(planted.net.flatten(planted.net.pool(acts)))[:, CUE_CLASS]

        step = 1e-2 * cav.reshape(h.shape[1:])
        slope = (logit(h + step) - logit(h - step)) / 2e-2
    assert (slope > 0).float().mean().item() == pytest.approx(sevens.scores[0, 1, 3].item())


def test_cav_is_the_logistic_regression_optimum() -> None:
    """Same CAV as scikit-learn's L2 logistic regression (C = 1 / (alpha n)), on its fitting rows."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(60, 300, generator=gen) + torch.linspace(0, 1, 300) * torch.cat(
        [torch.ones(30), -torch.ones(30)])[:, None]
    fitted = fit_cavs(z, [torch.arange(30), torch.arange(30, 60)], [(0, 1)], alpha=0.05,
                      test_fraction=0.2, seed=3)[0]
    gen = torch.Generator().manual_seed(3)  # the same split fit_cavs draws
    keep = [torch.randperm(30, generator=gen)[6:], 30 + torch.randperm(30, generator=gen)[6:]]
    rows = torch.cat(keep)
    y = (rows < 30).long().numpy()
    ref = LogisticRegression(C=1 / (0.05 * len(rows)), tol=1e-10, max_iter=10_000).fit(z[rows].numpy(), y)
    w = torch.from_numpy(ref.coef_[0]).float()
    assert torch.allclose(fitted.weights[0], w, atol=1e-4 * w.abs().max())
    assert fitted.biases[0].item() == pytest.approx(float(ref.intercept_[0]), abs=1e-4)
    assert fitted.vectors[0].norm().item() == pytest.approx(1.0)


def test_model_is_left_as_it_was(planted: Model, sevens: TCAVScores) -> None:
    net = planted.net
    assert not net.training and all(p.grad is None and p.requires_grad for p in net.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in net.modules())


def test_bad_sets_are_one_line(planted: Model, sets: dict[str, object]) -> None:
    randoms = sets["randoms"]
    x = planted.preprocess(class_set(CUE_CLASS, n=4).images)
    with pytest.raises(BadArgument, match=r"2 random set\(s\); give at least 3"):
        tcav(planted, sets["concepts"], randoms[:2], x, CUE_CLASS, LAYERS)  # type: ignore[arg-type, index]
    with pytest.raises(BadArgument, match="concept 'stripes' has 1 image"):
        tcav(planted, {"stripes": x[:1]}, randoms, x, CUE_CLASS, LAYERS)  # type: ignore[arg-type]
    with pytest.raises(BadArgument, match="random set 2 has 0 image"):
        tcav(planted, {"stripes": x}, [x, x, x[:0]], x, CUE_CLASS, LAYERS)
