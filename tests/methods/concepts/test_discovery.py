"""Concept discovery on a toy with planted concepts, and CRAFT's importances by their properties."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.errors import BadArgument, BadLayer
from convscope.methods.concepts.discovery import discover, layer_activations, reconstruct, top_units
from convscope.methods.concepts.importance import (
    _Head,
    concept_importance,
    jansen_total,
    sobol_design,
)
from tests.model_safety import assert_unharmed, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")


class Planted(nn.Module):
    """``features``: the 4 input channels through an identity 1x1 conv and a ReLU; head: average
    pool and a linear layer. Class 0 reads channels 0 and 1 (concept A lights both), class 1
    channels 2 and 3 (concept B, drawn twice as strong, so it is not the first by size alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.features[0].weight.copy_(torch.eye(4)[:, :, None, None])
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def planted_images(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 4, 8, 8) faint noise, a 2x2 square of concept A in the left half and one of concept B
    in the right half of each image; and the two squares as (N, 8, 8) masks."""
    g = torch.Generator().manual_seed(seed)
    x = 0.05 * torch.rand(n, 4, 8, 8, generator=g)
    masks = torch.zeros(2, n, 8, 8, dtype=torch.bool)
    for i in range(n):
        for c, (channels, strength, left) in enumerate((((0, 1), 1.0, 0), ((2, 3), 2.0, 4))):
            y, xx = (int(v) for v in torch.randint(0, 3, (2,), generator=g))
            y, xx = y * 3, left + xx  # rows 0..7, columns inside the half
            masks[c, i, y:y + 2, xx:xx + 2] = True
            x[i, list(channels), y:y + 2, xx:xx + 2] += strength
    return x, masks[0], masks[1]


@pytest.fixture(scope="module")
def toy() -> tuple[Planted, torch.Tensor, torch.Tensor, torch.Tensor]:
    return (Planted().eval(), *planted_images())


def _concept_of(bases: torch.Tensor, channels: list[int]) -> int:
    direction = torch.zeros(bases.shape[1])
    direction[channels] = 1
    return int((bases @ direction).argmax())


def test_planted_concepts_are_found_where_they_are(toy) -> None:
    model, x, mask_a, mask_b = toy
    found = discover(layer_activations(model, x, "features"), 2)
    a, b = _concept_of(found.bases, [0, 1]), _concept_of(found.bases, [2, 3])
    assert a != b
    assert torch.allclose(found.bases[a], torch.tensor([1.0, 1, 0, 0]) / 2 ** 0.5, atol=0.05)
    for concept, mask in ((a, mask_a), (b, mask_b)):
        peak = found.maps[:, concept].flatten(1).argmax(1)
        assert bool(mask.flatten(1)[torch.arange(len(x)), peak].all())
        inside = (found.maps[:, concept] * mask).sum() / found.maps[:, concept].sum()
        assert float(inside) > 0.6  # the squares are 1/16 of the area; the rest is faint noise
    best = top_units(found.maps, 3)[a]
    assert [t.value for t in best] == sorted((t.value for t in best), reverse=True)
    assert all(mask_a[t.image, t.y, t.x] for t in best)


@pytest.mark.parametrize("method", ["sobol", "gradient"])
def test_the_class_that_reads_a_concept_ranks_it_first(toy, method: str) -> None:
    model, x, *_ = toy
    found = discover(layer_activations(model, x, "features"), 2)
    a, b = _concept_of(found.bases, [0, 1]), _concept_of(found.bases, [2, 3])
    before = snapshot(model)
    for target, concept in ((0, a), (1, b)):
        scores = concept_importance(model, x, found, target, method=method)  # type: ignore[arg-type]
        assert scores.shape == (len(x), 2) and int(scores.mean(0).argmax()) == concept
    assert_unharmed(model, before)


def test_all_ones_masks_give_back_the_models_own_scores(digits_model, threes) -> None:
    """The residual is added back: unmasked concepts rebuild the real activations exactly."""
    found = discover(layer_activations(digits_model, threes, "block3"), 4)
    assert torch.allclose(reconstruct(found.maps, found.bases) + found.residual,
                          found.activations.acts, atol=1e-5)
    head = _Head(digits_model, found, threes, 3)
    rows = torch.arange(len(threes)).repeat_interleave(2)
    with torch.no_grad():
        got = head.scores(rows, torch.ones(len(rows), 4))
    assert torch.allclose(got, found.activations.logits[rows, 3], atol=1e-4)


def test_sobol_total_indices_on_a_linear_head_match_the_gradient(digits_model, threes) -> None:
    """After block4 digits_cnn is average pool + linear, so the score is linear in the masks,
    f(m) = c + sum_j g_j m_j, and with independent uniform masks S_T,j = g_j^2 / sum g^2 exactly:
    the quasi-random Sobol estimate must land there, and the gradient estimate is exact."""
    found = discover(layer_activations(digits_model, threes, "block4"), 5)
    sobol = concept_importance(digits_model, threes, found, 3, designs=64)
    gradient = concept_importance(digits_model, threes, found, 3, method="gradient")
    assert torch.allclose(gradient.sum(1), torch.ones(len(threes)), atol=1e-5)
    assert float((sobol - gradient).abs().max()) < 0.05
    assert torch.equal(sobol.mean(0).argsort(), gradient.mean(0).argsort())


def test_gradient_matches_finite_differences_of_the_masked_head(digits_model, threes) -> None:
    found = discover(layer_activations(digits_model, threes[:4], "block3"), 3)
    head = _Head(digits_model, found, threes[:4], 3)
    images = torch.arange(4)
    masks = torch.ones(4, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(head.scores(images, masks).sum(), masks)
    eps = 1e-2
    with torch.no_grad():
        for j in range(3):
            step = torch.zeros(4, 3)
            step[:, j] = eps
            diff = (head.scores(images, 1 + step) - head.scores(images, 1 - step)) / (2 * eps)
            assert torch.allclose(diff, grad[:, j], rtol=2e-2, atol=2e-3), j


def test_sobol_design_and_jansen_estimator_on_a_known_function() -> None:
    """f(m) = m_0 + 2 m_1 + m_0 m_2 (uniform masks): total indices by hand are
    S_T = (Var_0, Var_1, Var_2) / Var with the interaction counted in both 0 and 2."""
    design = sobol_design(3, 1024, seed=1)
    assert design.shape == (1024 * 5, 3) and bool(((design >= 0) & (design <= 1)).all())
    f = design[:, 0] + 2 * design[:, 1] + design[:, 0] * design[:, 2]
    got = jansen_total(f, 3, 1024)
    v = 1 / 12  # variance of U(0, 1); E[m] = 1/2, E[m^2] = 1/3
    inter = v * v  # Var of the pure m_0 m_2 interaction term
    var_0 = (1.5 ** 2) * v  # m_0 (1 + E m_2) first-order part
    var_2 = (0.5 ** 2) * v
    total = var_0 + 4 * v + var_2 + inter
    expected = torch.tensor([var_0 + inter, 4 * v, var_2 + inter]) / total
    assert torch.allclose(got, expected, atol=0.01)


def test_negative_activations_are_clamped_with_a_warning(digits_model, threes) -> None:
    with pytest.warns(UserWarning, match="negative activations .* clamped at 0"):
        acts = layer_activations(digits_model, threes[:4], "block4.1")  # batch norm, before ReLU
    assert float(acts.acts.min()) == 0.0


@pytest.mark.parametrize("call, error, words", [
    (lambda m, x: layer_activations(m, x, "fc"), BadLayer, "no spatial map"),
    (lambda m, x: layer_activations(m, x[:1], "block4"), BadArgument, "at least 2"),
    (lambda m, x: discover(layer_activations(m, x[:2], "block4"), 65), BadArgument,
     "k=65 concepts from layer 'block4' with 64 channels"),
])
def test_bad_input_is_refused_in_one_line(digits_model, threes, call, error, words: str) -> None:
    with pytest.raises(error) as err:
        call(digits_model, threes)
    assert words in str(err.value) and "\n" not in str(err.value)
