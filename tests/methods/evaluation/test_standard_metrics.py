"""The standard metrics (issue 22) behave as their papers say, on cases built to know the answer.

The toy model is linear: class 0's logit is ``sum(w * x) / 200`` with ``w = +1`` on the even pixels
of a 16x16 object (a checkerboard: fine detail, which ROAD's imputation from the neighbours
removes), 0 on its odd pixels and ``-0.02`` elsewhere (negative evidence); class 1's logit is a
constant. The images are bright on the object's even pixels and dim elsewhere. The true cause of
class 0 is then ``w * x`` (each pixel's exact contribution); a shuffled copy of that map carries
the same values in the wrong places. Every faithfulness and localization metric must prefer the
true map. Complexity metrics are checked on maps whose scores are known in closed form,
randomization metrics on a small ReLU network with the gradient, and infidelity against Captum's
implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from captum.metrics import infidelity as captum_infidelity
from scipy import stats
from torch import Tensor, nn

from convscope.errors import BadArgument
from convscope.methods.evaluation import complexity, confidence, randomization, road
from convscope.methods.evaluation.metrics import METRICS, MetricInput, get_metric, metric_names
from convscope.methods.registry import build_method
from convscope.model import FastForward, Model, Preprocess
from tests.model_safety import assert_unharmed, snapshot

SIZE = 64
OBJECT = (slice(4, 20), slice(4, 20))


def checkerboard() -> Tensor:
    index = torch.arange(16)
    return (index[:, None] + index[None]) % 2 == 0


def cause_model() -> Model:
    weight = torch.full((3, SIZE, SIZE), -0.02)
    weight[:, OBJECT[0], OBJECT[1]] = checkerboard().float()
    linear = nn.Linear(3 * SIZE * SIZE, 2)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[0] = weight.flatten() / 200
        linear.bias.copy_(torch.tensor([0.0, 1.6]))
    return Model(nn.Sequential(nn.Flatten(), linear), preprocess=Preprocess(input_size=(SIZE, SIZE)))


def cause_case() -> tuple[Model, Tensor, Tensor, Tensor, Tensor]:
    """(model, inputs, true maps, shuffled maps, object masks) for 6 images of class 0."""
    model = cause_model()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, SIZE, SIZE, generator=gen) * 0.5 + 0.25
    bright = torch.rand(6, 3, 16, 16, generator=gen) * 0.1 + 2.0
    x[:, :, OBJECT[0], OBJECT[1]] = torch.where(checkerboard(), bright, x[:, :, OBJECT[0], OBJECT[1]])
    weight = model.net[1].weight[0].detach().view(1, 3, SIZE, SIZE) * 200
    true = (weight * x).sum(1, keepdim=True)
    order = torch.stack([torch.randperm(SIZE * SIZE, generator=gen) for _ in range(6)])
    shuffled = true.flatten(1).gather(1, order).view_as(true)
    masks = torch.zeros(6, SIZE, SIZE, dtype=torch.bool)
    masks[:, OBJECT[0], OBJECT[1]] = True
    return model, x, true, shuffled, masks


def test_the_true_cause_beats_a_shuffled_copy_on_every_faithfulness_and_localization_metric() -> None:
    model, x, true, shuffled, masks = cause_case()
    targets = torch.zeros(6, dtype=torch.long)
    fast = FastForward(model)
    assert bool((fast(x).argmax(1) == 0).all())  # the target is what the model predicts
    names = metric_names("faithfulness") + metric_names("localization")
    assert {"road_morf", "road_lerf", "average_drop", "increase_confidence", "infidelity",
            "relevance_mass", "relevance_rank", "pointing_game"} <= set(names)
    for name in names:
        metric = get_metric(name)
        scores = [metric(MetricInput(model, x, maps, targets, fast, masks=masks, steps=10)).mean()
                  for maps in (true, shuffled)]
        better = scores[0] > scores[1] if metric.higher_is_better else scores[0] < scores[1]
        assert better, (name, scores)


def test_road_imputation_solves_the_neighbour_system() -> None:
    """Each removed pixel ends as the weighted mean of its 8 neighbours (1/6 direct, 1/12
    diagonal, renormalized at the border), known pixels unchanged (Rong et al. 2022, Sec. 4.2)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 20, 17, generator=gen)
    removed = torch.rand(2, 1, 20, 17, generator=gen) < 0.7
    out = road.impute(x, removed, noise=0.0, tol=1e-7, iterations=200).double()
    kernel = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]],
                          dtype=torch.float64).view(1, 1, 3, 3)
    flat = out.reshape(6, 1, 20, 17)
    total = torch.nn.functional.conv2d(flat, kernel, padding=1)
    weight = torch.nn.functional.conv2d(torch.ones(1, 1, 20, 17, dtype=torch.float64), kernel, padding=1)
    mean = (total / weight).view_as(out)
    hole = removed.expand_as(x)
    assert torch.allclose(out[hole], mean[hole], atol=1e-4)
    assert torch.equal(out[~hole].float(), x[~hole])
    noisy = road.impute(x, removed, noise=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy[~hole], x[~hole]) and not torch.allclose(noisy[hole], out[hole].float())


def test_road_counts_follow_quantus_percentages() -> None:
    assert road.removal_counts(784, 50).tolist() == [int(784 * p / 100) for p in range(1, 100, 2)]


def test_sparseness_and_complexity_of_one_hot_and_constant_maps() -> None:
    n = 32 * 32
    one_hot = torch.zeros(1, 1, 32, 32)
    one_hot[0, 0, 5, 7] = 3.0
    constant = torch.full((1, 1, 32, 32), 0.7)
    assert complexity.sparseness(one_hot).item() == pytest.approx(1 - 1 / n, abs=1e-6)
    assert complexity.sparseness(one_hot).item() == pytest.approx(1.0, abs=1 / n)
    assert complexity.sparseness(constant).item() == pytest.approx(0.0, abs=1e-6)
    assert complexity.complexity(one_hot).item() == pytest.approx(0.0, abs=1e-6)
    assert complexity.complexity(constant).item() == pytest.approx(math.log(n), rel=1e-6)
    assert complexity.sparseness(torch.zeros(1, 1, 4, 4)).item() == 0.0
    assert complexity.complexity(torch.zeros(1, 1, 4, 4)).item() == 0.0


def test_average_drop_and_increase_on_hand_computed_probabilities() -> None:
    model, x, true, _, _ = cause_case()
    targets = torch.zeros(6, dtype=torch.long)
    drop, rise = confidence.confidence_change(model, x, true, targets)
    scaled = (true - true.amin((2, 3), keepdim=True)) / (true.amax((2, 3), keepdim=True)
                                                        - true.amin((2, 3), keepdim=True))
    with torch.no_grad():
        p = model(x).softmax(1)[:, 0]
        q = model(scaled * x).softmax(1)[:, 0]
    assert torch.allclose(drop, (p - q).relu() / p, atol=1e-5)
    assert torch.equal(rise, (q > p).float())


def test_infidelity_equals_captums_normalized_infidelity() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3))
    model = Model(net, preprocess=Preprocess(input_size=(16, 16)))
    x, targets = torch.randn(2, 3, 16, 16), torch.tensor([0, 2])
    samples, sigma = 7, 0.1
    noise = sigma * torch.randn((samples, *x.shape), generator=torch.Generator().manual_seed(3))
    rows = noise.transpose(0, 1).flatten(0, 1)  # Captum repeats each input ``samples`` times in a row

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        return rows, inputs - rows

    for maps in (torch.randn(2, 3, 16, 16), torch.randn(2, 1, 4, 4)):
        ours = confidence.infidelity(model, x, maps, targets, samples=samples, sigma=sigma, seed=3)
        full = confidence.attribution_like(maps, x)
        ref = captum_infidelity(net.eval(), perturb, x, full, target=targets,
                                n_perturb_samples=samples, normalize=True)
        assert torch.allclose(ours, ref.float(), rtol=1e-3, atol=1e-9)


def relu_net() -> Model:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 5))
    return Model(net, preprocess=Preprocess(input_size=(16, 16)))


def saliency(model: Model, inputs: Tensor, targets: Tensor) -> Tensor:
    return build_method("saliency", model, None)(inputs, targets).detach()


def model_blind(model: Model, inputs: Tensor, targets: Tensor) -> Tensor:
    """An 'explanation' that never looks at the model: the image's own magnitude."""
    return inputs.abs().sum(1, keepdim=True)


def test_mprt_similarity_falls_as_more_layers_are_randomized_and_the_model_is_untouched() -> None:
    model = relu_net()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        targets = model(x).argmax(1)
    before = snapshot(model)
    rho = randomization.smooth_mprt_steps(model, x, targets, saliency, samples=3, max_steps=None)
    means = rho.mean(1)
    assert len(means) == 4  # the linear layer, then the three convolutions from the top
    assert means[-1] < means[0] - 0.2, means
    assert bool((means[1:] <= means[:-1] + 0.05).all()), means
    blind = randomization.smooth_mprt_steps(model, x, targets, model_blind, samples=3, max_steps=None)
    assert torch.allclose(blind, torch.ones_like(blind), atol=1e-5)
    data = MetricInput(model, x, saliency(model, x, targets), targets, FastForward(model), explain=saliency)
    for name in metric_names("randomization") + metric_names("robustness"):
        assert torch.isfinite(get_metric(name)(data)).all(), name
    assert_unharmed(model, before)


def test_randomization_metrics_flag_a_map_that_ignores_the_model_and_the_class() -> None:
    model = relu_net()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 4])
    blind, grads = model_blind(model, x, targets), saliency(model, x, targets)
    assert torch.allclose(randomization.efficient_mprt(model, x, blind, targets, model_blind),
                          torch.zeros(3))
    values = grads.flatten(1).numpy()
    expected = [stats.entropy(np.histogram(row, bins=100)[0]) for row in values]
    assert torch.allclose(randomization.discrete_entropy(grads), torch.tensor(expected).float(), rtol=1e-5)
    assert torch.allclose(randomization.random_logit(model, x, blind, targets, model_blind), torch.ones(3))
    assert float(randomization.random_logit(model, x, grads, targets, saliency).mean()) < 0.9
    others = randomization.other_classes(torch.tensor([0, 4, 2] * 50), 5, seed=0)
    assert not bool((others == torch.tensor([0, 4, 2] * 50)).any()) and set(others.tolist()) <= set(range(5))


def test_sensitivity_is_zero_for_a_constant_method_and_the_relative_change_otherwise() -> None:
    model = relu_net()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([1, 3])

    def constant(m: Model, inputs: Tensor, t: Tensor) -> Tensor:
        return torch.ones(inputs.shape[0], 1, 16, 16)

    data = MetricInput(model, x, torch.ones(2, 1, 16, 16), targets, FastForward(model), explain=constant)
    assert torch.equal(get_metric("max_sensitivity")(data), torch.zeros(2))
    from convscope.methods.evaluation.robustness import sensitivities

    maps = saliency(model, x, targets)
    per = sensitivities(model, x, maps, targets, saliency, samples=4, radius=0.2, seed=0)
    noise = (torch.rand((4, *x.shape), generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.2
    expected = torch.stack([(saliency(model, x + noise[i], targets) - maps).flatten(1).norm(dim=1)
                            / maps.flatten(1).norm(dim=1) for i in range(4)], 1)
    assert torch.allclose(per, expected, rtol=1e-4)


def test_missing_inputs_are_refused_in_one_line() -> None:
    model, x, true, _, _ = cause_case()
    data = MetricInput(model, x, true, torch.zeros(6, dtype=torch.long), FastForward(model))
    for name in ("relevance_mass", "relevance_rank", "pointing_game"):
        with pytest.raises(BadArgument, match=f"metric '{name}' needs a box or mask") as err:
            get_metric(name)(data)
        assert "\n" not in str(err.value)
    for name in ("max_sensitivity", "smooth_mprt", "efficient_mprt", "random_logit"):
        with pytest.raises(BadArgument, match=f"metric '{name}' needs the method itself"):
            get_metric(name)(data)


def test_every_new_metric_documents_direction_paper_and_assumption() -> None:
    for name in ("road_morf", "road_lerf", "average_drop", "increase_confidence", "infidelity",
                 "max_sensitivity", "avg_sensitivity", "relevance_mass", "relevance_rank",
                 "sparseness", "complexity", "smooth_mprt", "efficient_mprt", "random_logit"):
        metric = METRICS[name]
        assert metric.summary and " 20" in metric.paper, name
