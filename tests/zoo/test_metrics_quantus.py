"""The standard metrics against Quantus 0.6.0 on the same model, inputs and attributions.

Quantus is a test-only dependency of the zoo venv. Each test sets Quantus's ``abs`` and
``normalise`` to what our metric computes (its defaults differ per metric) and gives both sides
the same maps; where a metric is stochastic the noise is shared (a Quantus ``perturb_func`` that
returns our draws), so the numbers agree to float precision, well inside the 1% of issue 22.
Where the definitions differ (random logit's SSIM, infidelity's perturbations, MPRT's
re-initialization) the test compares what is shared and the docstrings say which follows the paper.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import quantus
import torch
from torch import Tensor, nn

from convscope.methods.evaluation import complexity, randomization, regions, road, sanity
from convscope.methods.evaluation.robustness import sensitivities
from convscope.methods.registry import build_method
from convscope.model import Model, Preprocess

warnings.filterwarnings("ignore")  # Quantus's parameterisation notes


def small_model(channels: int = 3, side: int = 24, classes: int = 5) -> Model:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes))
    return Model(net.eval(), preprocess=Preprocess(input_size=(side, side)))


def batch(channels: int = 3, side: int = 24, n: int = 4, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Inputs, non-negative continuous maps (no ties) and object masks."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, side, side, generator=gen)
    maps = torch.rand(n, 1, side, side, generator=gen) ** 3
    masks = torch.zeros(n, 1, side, side, dtype=torch.bool)
    for i in range(n):
        masks[i, 0, 2 + i:10 + 2 * i, 3:12 + i] = True
    maps[masks] += 0.3  # some relevance on the objects
    return x, maps, masks


def close(ours: Tensor, theirs: object, rel: float = 0.01) -> None:
    expected = np.asarray(theirs, dtype=np.float64).reshape(-1)
    got = ours.double().numpy().reshape(-1)
    assert np.allclose(got, expected, rtol=rel, atol=1e-6), (got, expected)


def q_args(model: Model, x: Tensor, targets: Tensor, maps: Tensor,
           masks: Tensor | None = None) -> dict[str, object]:
    out: dict[str, object] = {"model": model.net, "x_batch": x.numpy(), "y_batch": targets.numpy(),
                              "a_batch": maps.numpy(), "device": "cpu", "channel_first": True}
    if masks is not None:
        out["s_batch"] = masks.numpy().astype(np.float32)
    return out


def test_sparseness_and_complexity_match_quantus() -> None:
    model = small_model()
    x, maps, _ = batch()
    targets = torch.zeros(4, dtype=torch.long)
    args = q_args(model, x, targets, maps)
    matched = {"abs": True, "normalise": False, "disable_warnings": True}
    close(complexity.sparseness(maps), quantus.Sparseness(**matched)(**args))
    close(complexity.complexity(maps), quantus.Complexity(**matched)(**args))


def test_relevance_mass_rank_and_pointing_game_match_quantus() -> None:
    model = small_model()
    x, maps, masks = batch()
    targets = torch.zeros(4, dtype=torch.long)
    args = q_args(model, x, targets, maps, masks)
    close(regions.relevance_mass(maps, masks),
          quantus.RelevanceMassAccuracy(abs=False, normalise=False, disable_warnings=True)(**args))
    close(regions.relevance_rank(maps, masks),
          quantus.RelevanceRankAccuracy(abs=False, normalise=False, disable_warnings=True)(**args))
    close(regions.pointing_hits(maps, masks, tolerance=0).float(),
          quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)(**args))


def test_road_morf_matches_quantus_accuracy_per_level() -> None:
    """Grayscale: Quantus's ROAD indexes the map broadcast over channels as pixels (RGB fails)."""
    model = small_model(channels=1, side=20, classes=3)
    x, maps, _ = batch(channels=1, side=20, n=6, seed=1)
    with torch.no_grad():
        targets = model(x).argmax(1)
    theirs = quantus.ROAD(noise=0.0, percentages=list(range(1, 100, 2)), abs=False, normalise=False,
                          disable_warnings=True)(**q_args(model, x, targets, maps))
    expected = float(np.mean(list(theirs.values())))
    ours = road.road(model, x, maps, targets, steps=50, noise=0.0)  # the default solver
    assert float(ours.mean()) == pytest.approx(expected, rel=0.01)


def saliency(model: Model, inputs: Tensor, targets: Tensor) -> Tensor:
    return build_method("saliency", model, None)(inputs, targets).detach()


def test_max_and_avg_sensitivity_match_quantus_with_the_same_noise() -> None:
    model = small_model()
    x, _, _ = batch()
    targets = torch.tensor([0, 1, 2, 3])
    maps = saliency(model, x, targets)
    samples, radius = 5, 0.2
    noise = (torch.rand((samples, *x.shape), generator=torch.Generator().manual_seed(0)) * 2 - 1) * radius

    def draws() -> Iterator[np.ndarray]:
        while True:
            for i in range(samples):
                yield noise[i].reshape(x.shape[0], -1).numpy().astype(np.float64)

    source = draws()

    def perturb(arr: np.ndarray, indices: np.ndarray, **kwargs: object) -> np.ndarray:
        return arr + next(source)

    def explain_func(model: nn.Module, inputs: np.ndarray, targets: np.ndarray,
                     **kwargs: object) -> np.ndarray:
        wrapped = Model(model, preprocess=Preprocess(input_size=(24, 24)))
        return saliency(wrapped, torch.as_tensor(inputs).float(), torch.as_tensor(targets).long()).numpy()

    per = sensitivities(model, x, maps, targets, saliency, samples=samples, radius=radius, seed=0)
    for cls, ours in ((quantus.MaxSensitivity, per.amax(1)), (quantus.AvgSensitivity, per.mean(1))):
        metric = cls(nr_samples=samples, perturb_func=perturb, abs=False, normalise=False,
                     disable_warnings=True)
        theirs = metric(**q_args(model, x, targets, maps), explain_func=explain_func)
        close(ours, theirs)


def test_efficient_mprt_scores_the_randomized_maps_as_quantus_does() -> None:
    """The randomized copies differ (Quantus resets layers with ``reset_parameters``, ours draws
    from a seeded generator), so both score the same pair of maps: the original and one given
    for the randomized model."""
    model = small_model()
    x, maps, _ = batch()
    targets = torch.zeros(4, dtype=torch.long)
    random_maps = torch.randn(4, 1, 24, 24, generator=torch.Generator().manual_seed(5))
    original = model.net

    def explain_func(model: nn.Module, inputs: np.ndarray, targets: np.ndarray,
                     **kwargs: object) -> np.ndarray:
        return (maps if model is original else random_maps).numpy()

    metric = quantus.EfficientMPRT(abs=False, normalise=False, complexity_func_kwargs={"n_bins": 100},
                                   disable_warnings=True)
    theirs = metric(**q_args(model, x, targets, maps), explain_func=explain_func)
    ours = randomization.efficient_mprt(model, x, maps, targets, lambda m, i, t: random_maps)
    close(ours, theirs)


def test_random_logit_matches_quantus_with_the_same_classes_and_ssim() -> None:
    """Quantus flattens the maps before scikit-image's SSIM (a 1-D SSIM in raster order); ours is
    the 2-D image SSIM (randomization.py's module doc). Given ours as Quantus's
    ``similarity_func``, and the other classes Quantus drew, the numbers are the same."""
    model = small_model()
    x, _, _ = batch()
    targets = torch.tensor([0, 1, 2, 3])
    maps = saliency(model, x, targets)
    drawn: list[np.ndarray] = []

    def explain_func(model: nn.Module, inputs: np.ndarray, targets: np.ndarray,
                     **kwargs: object) -> np.ndarray:
        drawn.append(np.asarray(targets))
        wrapped = Model(model, preprocess=Preprocess(input_size=(24, 24)))
        return saliency(wrapped, torch.as_tensor(inputs).float(), torch.as_tensor(targets).long()).numpy()

    def image_ssim(a: np.ndarray, b: np.ndarray, batched: bool = True, **kwargs: object) -> list[float]:
        as_maps = [torch.as_tensor(np.asarray(m)).float().view(-1, 1, 24, 24).abs() for m in (a, b)]
        return sanity.ssim(as_maps[0], as_maps[1]).tolist()

    metric = quantus.RandomLogit(num_classes=5, similarity_func=image_ssim, abs=False, normalise=False,
                                 disable_warnings=True)
    theirs = metric(**q_args(model, x, targets, maps), explain_func=explain_func)
    others = torch.as_tensor(drawn[-1]).long()
    assert bool((others != targets).all())
    ours = randomization.random_logit(model, x, maps, targets, saliency, others=others)
    close(ours, theirs)
