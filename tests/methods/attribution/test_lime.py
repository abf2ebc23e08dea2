"""LIME: exact on models that are linear in superpixel presence, equal to the ``lime`` package on
its own samples, correlated with it on independent ones, and right about which object is where.

The ``lime`` package (0.2.0.1, test-only) is run with our segments through ``segmentation_fn``,
``top_labels=None`` and its defaults otherwise: mean-colour hiding (``hide_color=None``), kernel
width 0.25 on cosine distance, all features kept (``num_features=100000`` -> "highest_weights"
keeps every feature), ``Ridge(alpha=1)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.data import load_sample
from convscope.errors import BadArgument
from convscope.methods.attribution import Lime, LimeResult, top_superpixel_mask
from convscope.methods.attribution.coalitions import superpixels
from convscope.methods.attribution.lime import kernel_weights, weighted_ridge
from convscope.methods.registry import build_method, get_method
from convscope.model import Model, Preprocess


class RegionSum(nn.Module):
    """logit 0 = sum(x * M), logit 1 = 0: the score is linear in every superpixel's presence."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, x: Tensor) -> Tensor:
        s = (x * self.weight).flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def _cat_pixels(size: int) -> Tensor:
    return F.interpolate(load_sample("cat")[None], size=(size, size), mode="bilinear",
                         antialias=True, align_corners=False).clamp(0, 1)


@pytest.fixture
def tiny32(tiny: Model) -> Model:
    """The seeded tiny CNN (global average pooling: any input size) fed 32x32 images."""
    return Model(tiny.net, preprocess=Preprocess(input_size=(32, 32)), name="tiny32")


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_registered_as_signed_perturbation() -> None:
    info = get_method("lime")
    assert (info.cls, info.family, info.signed, info.needs_layer) == (Lime, "perturbation", True, False)


@pytest.mark.parametrize("baseline", ["mean", "segment_mean"])
def test_recovers_the_coefficients_of_a_model_linear_in_superpixels(baseline: str) -> None:
    size = 24
    weight = torch.randn(3, size, size, generator=torch.Generator().manual_seed(1))
    model = Model(RegionSum(weight), preprocess=Preprocess(input_size=(size, size)), labels=["s", "0"])
    x = model.normalize(_cat_pixels(size))
    lime = Lime(model, samples=400, segments=12, baseline=baseline, score="logit", alpha=1e-9)
    result = lime.explain_superpixels(x, 0)
    seg, count = result.segments[0], int(result.counts[0])
    assert count >= 6
    known, everything_hidden = torch.zeros(count), torch.tensor(0.0)
    for s in range(count):  # superpixel s on: sum of W (x - h) over it; h = what hides it
        xs, ws = x[0][:, seg == s], weight[:, seg == s]
        hs = xs.mean(1, keepdim=True).expand_as(xs) if baseline == "segment_mean" else torch.zeros_like(xs)
        known[s], everything_hidden = (ws * (xs - hs)).sum(), everything_hidden + (ws * hs).sum()
    torch.testing.assert_close(result.weights[0], known.double(), rtol=1e-4, atol=1e-4)
    assert result.score[0] > 1 - 1e-9  # exactly linear: R^2 = 1
    torch.testing.assert_close(result.intercept[0], everything_hidden.double(), rtol=1e-4, atol=1e-3)
    # lime's own penalty (alpha = 1) shrinks the weights only slightly with this many samples
    shrunk = Lime(model, samples=400, segments=12, baseline=baseline, score="logit").explain_superpixels(x, 0)
    assert torch.allclose(shrunk.weights[0], known.double(), rtol=0.05, atol=0.05 * known.abs().max())


def test_map_gives_every_pixel_its_superpixel_weight_and_seed_fixes_it(tiny32: Model) -> None:
    model = tiny32
    x = model.normalize(_cat_pixels(32))
    lime = Lime(model, samples=60, segments=10, seed=3)
    result = lime.explain_superpixels(x, 1)
    assert isinstance(result, LimeResult)
    maps = lime(x, 1)
    assert maps.shape == (1, 1, 32, 32) and maps.dtype == x.dtype
    for s in range(int(result.counts[0])):
        assert torch.all(maps[0, 0][result.segments[0] == s] == result.weights[0, s].float())
    again = Lime(model, samples=60, segments=10, seed=3).explain_superpixels(x, 1)
    assert torch.equal(again.weights, result.weights) and torch.equal(again.segments, result.segments)
    other = Lime(model, samples=60, segments=10, seed=4).explain_superpixels(x, 1)
    assert not torch.equal(other.weights, result.weights)


def test_samples_start_all_on_and_are_fair_coins(tiny32: Model) -> None:
    bits, _ = Lime(tiny32, samples=4000, seed=0).draw(torch.tensor([5, 3]), torch.device("cpu"))
    assert bits.shape == (2, 4000, 5) and bits[:, 0, :3].all() and bits[0, 0].all()
    assert not bits[1, :, 3:].any()  # past an image's own count: always off (no weight)
    assert abs(bits[0, 1:].float().mean().item() - 0.5) < 0.02


def test_chunk_size_does_not_change_results(tiny32: Model) -> None:
    model = tiny32
    x = model.normalize(torch.cat([_cat_pixels(32), _cat_pixels(32).flip(-1)]))
    results = [Lime(model, samples=30, segments=8, batch_size=bs).explain_superpixels(x, [1, 2])
               for bs in (4, 7, 60)]
    for other in results[1:]:
        assert torch.equal(other.segments, results[0].segments)
        torch.testing.assert_close(other.weights, results[0].weights, rtol=1e-5, atol=1e-7)


def test_top_superpixel_mask_shows_the_largest_positive_weights() -> None:
    seg = torch.tensor([[[0, 1], [2, 3]], [[0, 0], [1, 1]]])
    weights = torch.tensor([[0.3, -0.9, 0.1, 0.5], [-0.2, -0.1, 0.0, 0.0]], dtype=torch.float64)
    result = LimeResult(weights, seg, torch.tensor([4, 2]), torch.zeros(2), torch.ones(2))
    mask = top_superpixel_mask(result, 2)
    assert mask.shape == (2, 1, 2, 2) and mask.dtype == torch.bool
    assert mask[0, 0].tolist() == [[True, False], [False, True]]
    assert not mask[1].any()  # no positive weight: nothing shown (as lime's positive_only)
    both = top_superpixel_mask(result, 2, positive_only=False)
    assert both[0, 0].tolist() == [[False, True], [False, True]]
    assert both[1, 0].tolist() == [[True, True], [True, True]]


def test_given_segments_and_grayscale_models() -> None:
    model = Model(nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)),
                  preprocess=Preprocess(input_size=(8, 8), mean=(0.5,), std=(0.25,), channels=1))
    x = model.normalize(torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    grid = (torch.arange(8)[:, None] // 4) * 10 + torch.arange(8)[None] // 4  # labels 0, 1, 10, 11
    result = Lime(model, samples=30).explain_superpixels(x, 0, segments=grid)
    assert result.counts.tolist() == [4, 4] and result.segments.max() == 3
    assert Lime(model, samples=20, segments=4)(x, 0).shape == (2, 1, 8, 8)  # SLIC on gray images
    with pytest.raises(BadArgument):
        Lime(model).explain_superpixels(x, 0, segments=grid[:4])
    with pytest.raises(BadArgument):
        Lime(model).explain_superpixels(x, 0, segments=grid.float())


@pytest.mark.parametrize("method", ["slic", "quickshift", "felzenszwalb"])
def test_segmentations_label_every_pixel_from_zero(method: str) -> None:
    seg = superpixels(_cat_pixels(48), method=method, segments=20)  # type: ignore[arg-type]
    assert seg.shape == (1, 48, 48) and seg.dtype == torch.long
    assert torch.equal(seg.unique(), torch.arange(int(seg.max()) + 1)) and 2 <= seg.max() + 1 <= 60


@pytest.mark.parametrize("options", [
    {"samples": 0}, {"samples": 2.5}, {"segments": 0}, {"compactness": 0}, {"kernel_width": -1},
    {"alpha": 0}, {"sigma": 0}, {"batch_size": 0}, {"segmentation": "watershed"},
    {"baseline": "gray"}, {"score": "softmax"},
])
def test_bad_options_raise(options: dict, tiny32: Model) -> None:
    with pytest.raises(BadArgument):
        build_method("lime", tiny32, **options)


def test_bad_top_k_and_unknown_option_raise(tiny32: Model) -> None:
    with pytest.raises(BadArgument):
        build_method("lime", tiny32, samplez=10)
    result = LimeResult(torch.zeros(1, 2), torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([2]),
                        torch.zeros(1), torch.ones(1))
    with pytest.raises(BadArgument):
        top_superpixel_mask(result, 0)


def _lime_package_run(model: Model, pixels: Tensor, segments: Tensor, label: int, samples: int,
                      seed: int) -> tuple[object, np.ndarray, np.ndarray]:
    """lime's explanation, and the samples and probabilities it drew (spied on its data_labels)."""
    lime_image = pytest.importorskip("lime.lime_image")

    def classifier(images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            return model(model.normalize(batch)).softmax(-1).numpy()

    explainer = lime_image.LimeImageExplainer(random_state=seed)
    drawn: dict[str, np.ndarray] = {}
    draw = explainer.data_labels

    def spy(*args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        drawn["data"], drawn["labels"] = draw(*args, **kwargs)
        return drawn["data"], drawn["labels"]

    explainer.data_labels = spy
    seg = segments[0].numpy()
    explanation = explainer.explain_instance(
        pixels[0].permute(1, 2, 0).double().numpy(), classifier, labels=(label,), top_labels=None,
        num_samples=samples, segmentation_fn=lambda _image: seg)
    return explanation, drawn["data"], drawn["labels"]


def _lime_weights(explanation: object, label: int, count: int) -> np.ndarray:
    out = np.zeros(count)
    for feature, weight in explanation.local_exp[label]:  # type: ignore[attr-defined]
        out[feature] = weight
    return out


def test_equals_the_lime_package_on_its_own_samples(tiny32: Model) -> None:
    """Same samples in: same images scored, same kernel, same ridge, same R^2 (to rounding)."""
    model, label = tiny32, 1
    pixels = _cat_pixels(32)
    x = model.normalize(pixels)
    lime = Lime(model, samples=300, segments=12)
    segments = lime.explain_superpixels(x, label).segments
    counts = segments.flatten(1).amax(1) + 1
    explanation, data, labels = _lime_package_run(model, pixels, segments, label, 300, seed=0)
    bits = torch.from_numpy(data).bool()[None]
    ours = lime.perturbed_scores(x, lime.hidden(x, segments), segments, bits, torch.tensor([label]))
    torch.testing.assert_close(ours[0].double(), torch.from_numpy(labels[:, label]).double(), rtol=1e-5,
                               atol=1e-6)
    y = torch.from_numpy(labels[:, label]).double()[None]
    coef, intercept, r2 = weighted_ridge(bits, y, kernel_weights(bits, counts, 0.25), 1.0)
    expected = _lime_weights(explanation, label, int(counts[0]))
    np.testing.assert_allclose(coef[0].numpy(), expected, rtol=1e-7, atol=1e-12)
    assert intercept[0].item() == pytest.approx(explanation.intercept[label], rel=1e-9)
    assert r2[0].item() == pytest.approx(explanation.score, rel=1e-9)


def test_correlates_with_the_lime_package_on_independent_samples(tiny32: Model) -> None:
    """Different random samples, same segmentation and count: weights agree (r >= 0.9)."""
    model, label, samples = tiny32, 1, 1000
    pixels = _cat_pixels(32)
    ours = Lime(model, samples=samples, segments=16).explain_superpixels(model.normalize(pixels), label)
    explanation, _, _ = _lime_package_run(model, pixels, ours.segments, label, samples, seed=0)
    theirs = _lime_weights(explanation, label, int(ours.counts[0]))
    r = _pearson(ours.weights[0].numpy(), theirs)
    assert r >= 0.9, f"Pearson r = {r:.4f} between our weights and lime's"


def test_localizes_the_right_object_of_two(lite0: Model) -> None:
    x = lite0.normalize(load_sample("cat_and_coffee")[None]).expand(2, -1, -1, -1)
    result = Lime(lite0, samples=48, segments=16).explain_superpixels(x, [285, 967])
    mask = top_superpixel_mask(result, 5).float()
    left = mask[..., :112].sum((1, 2, 3)) / mask.sum((1, 2, 3))
    # seeds 0-3 put 70-85% of the cat's and 0-17% of the espresso's top-5 area on the left
    assert left[0] > 2 / 3, f"cat: only {left[0]:.0%} of the top superpixels on the left"
    assert left[1] < 1 / 3, f"espresso: {left[1]:.0%} of the top superpixels on the left"
