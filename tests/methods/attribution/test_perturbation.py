"""Occlusion and RISE: equal to Captum and to closed forms, seeded, chunk-invariant, localizing.

The two-object image (cat left, espresso right) also checks Score-CAM, the third method on the
fast path, so the image is built once for the three.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.data import load_image
from convscope.errors import BadArgument
from convscope.methods.attribution.baselines import make_baseline
from convscope.methods.attribution.perturbation import RISE, Occlusion
from convscope.methods.attribution.scorecam import ScoreCAM
from convscope.methods.registry import build_method, get_method
from convscope.model import Model, Preprocess, guarded

captum_attr = pytest.importorskip("captum.attr")


class Linear(nn.Module):
    """f(x) = sum(w * x) + b per class: occlusion and RISE have closed forms on it."""

    def __init__(self, shape: tuple[int, int, int], classes: int = 2) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.w = nn.Parameter(torch.randn(classes, *shape, generator=gen))
        self.b = nn.Parameter(torch.randn(classes, generator=gen))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bchw,kchw->bk", x, self.w) + self.b


def _linear(size: int = 12) -> Model:
    return Model(Linear((3, size, size)), preprocess=Preprocess(input_size=(size, size)))


def _inputs(batch: int, size: int, seed: int = 1) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _captum_occlusion(model: Model, x: Tensor, target: object, window: tuple[int, int],
                      stride: tuple[int, int], baseline: Tensor) -> Tensor:
    with guarded(model):
        return captum_attr.Occlusion(model).attribute(
            x, sliding_window_shapes=(x.shape[1], *window), strides=(x.shape[1], *stride),
            baselines=baseline, target=target, perturbations_per_eval=16)


def test_registered() -> None:
    for name, signed in (("occlusion", True), ("rise", False)):
        info = get_method(name)
        assert info.family == "perturbation" and not info.needs_layer and info.signed is signed


@pytest.mark.parametrize(("window", "stride", "baseline"), [
    ((4, 4), (2, 2), "mean"),
    ((5, 5), (3, 3), "black"),  # the last window hangs over the border and is clipped
    ((4, 6), (2, 3), "blur"),
    ((3, 3), (3, 3), "tensor"),
])
def test_occlusion_equals_captum_on_the_tiny_model(tiny: Model, window: tuple[int, int],
                                                   stride: tuple[int, int], baseline: str) -> None:
    x = _inputs(3, 16)
    base: str | Tensor = _inputs(1, 16, seed=9) if baseline == "tensor" else baseline
    ours = Occlusion(tiny, window=window, stride=stride, baseline=base, batch_size=5)(x, [0, 2, 3])
    ref = _captum_occlusion(tiny, x, [0, 2, 3], window, stride, make_baseline(tiny, x, base, sigma=10.0))
    assert ours.shape == (3, 1, 16, 16)
    assert (ours - ref).abs().max() < 1e-5  # Captum repeats the map on every channel


def test_occlusion_equals_captum_on_lite0(lite0: Model) -> None:
    x = lite0.preprocess(load_image("sample:cat"))
    ours = Occlusion(lite0, window=56, stride=56, baseline="black")(x, 285)
    ref = _captum_occlusion(lite0, x, 285, (56, 56), (56, 56), lite0.normalize(torch.zeros_like(x)))
    assert ref.abs().max() > 0.1  # the comparison is not between two empty maps
    assert (ours - ref).abs().max() < 1e-4


def test_occlusion_of_a_linear_model_is_its_window_sums() -> None:
    """Non-overlapping windows: each pixel gets sum_window w (x - baseline) of its own window."""
    model = _linear()
    x = _inputs(2, 12)
    out = Occlusion(model, window=4, stride=4, baseline="black")(x, [0, 1])
    contrib = (model.net.w[[0, 1]] * (x - model.normalize(torch.zeros_like(x)))).sum(1, keepdim=True)
    window_sums = F.avg_pool2d(contrib, 4) * 16
    torch.testing.assert_close(out, window_sums.repeat_interleave(4, 2).repeat_interleave(4, 3),
                               atol=1e-4, rtol=1e-4)


def test_occlusion_chunking_and_defaults(tiny: Model) -> None:
    x = _inputs(2, 16)
    maps = [Occlusion(tiny, window=4, stride=2, batch_size=b)(x, 1) for b in (1, 7, 1000)]
    for m in maps[1:]:
        torch.testing.assert_close(m, maps[0], atol=1e-6, rtol=1e-5)
    occ = Occlusion(tiny)  # default: about a seventh of the side, half-window steps
    assert occ.window == (3, 3) and occ.stride == (1, 1)
    assert Occlusion(Model(nn.Identity())).window == (32, 32)  # 224x224 input: 169 windows


def test_rise_equals_its_formula_on_a_linear_model() -> None:
    """Eq. 6 with the method's own masks: S = sum_i f(fill + M_i (x - fill)) M_i / (N p)."""
    model = _linear()
    x = _inputs(1, 12)
    rise = RISE(model, masks=40, cells=3, p=0.4, output="logit", baseline="mean", seed=3, batch_size=7)
    grids, shifts = rise.sample(12, 12)
    masks = rise.upsample(grids, shifts, 12, 12)
    scores = model(x * masks)[:, 1]  # "mean" fills with model input 0
    expected = (scores[:, None, None, None] * masks).sum(0, keepdim=True) / (40 * 0.4)
    torch.testing.assert_close(rise(x, 1), expected.detach(), atol=1e-4, rtol=1e-4)


def test_rise_masks_are_smooth_shifted_grids() -> None:
    rise = RISE(_linear(), masks=400, cells=4, p=0.3)
    grids, shifts = rise.sample(12, 12)
    assert grids.shape == (400, 1, 4, 4) and set(grids.unique().tolist()) == {0.0, 1.0}
    assert shifts.min() >= 0 and shifts.max() < 3 and len(shifts.unique()) == 3  # cells of 3 pixels
    masks = rise.upsample(grids, shifts, 12, 12)
    assert masks.shape == (400, 1, 12, 12) and masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean().item() - 0.3) < 0.03
    assert ((masks > 0.01) & (masks < 0.99)).float().mean() > 0.2  # bilinear edges, not binary


def test_rise_is_reproducible_and_chunk_invariant(tiny: Model) -> None:
    x = _inputs(2, 16)
    first = RISE(tiny, masks=30, cells=4, seed=7, batch_size=4)(x, [1, 2])
    again = RISE(tiny, masks=30, cells=4, seed=7, batch_size=64)(x, [1, 2])
    other = RISE(tiny, masks=30, cells=4, seed=8, batch_size=4)(x, [1, 2])
    torch.testing.assert_close(first, again, atol=1e-6, rtol=1e-5)
    assert (first - other).abs().max() > 1e-4
    assert first.shape == (2, 1, 16, 16) and (first >= 0).all()  # probabilities


@pytest.mark.parametrize(("name", "options", "match"), [
    ("occlusion", {"window": 0}, "window"),
    ("occlusion", {"window": (3,)}, "window"),
    ("occlusion", {"window": 2.5}, "window"),
    ("occlusion", {"window": 4, "stride": 5}, "stride"),
    ("occlusion", {"baseline": "grey"}, "baseline"),
    ("occlusion", {"baseline": torch.tensor(float("nan"))}, "NaN"),
    ("occlusion", {"batch_size": 0}, "batch_size"),
    ("occlusion", {"sigma": -1.0}, "sigma"),
    ("rise", {"masks": 0}, "masks"),
    ("rise", {"p": 1.0}, "p="),
    ("rise", {"cells": 2.5}, "cells"),
    ("rise", {"output": "probabilities"}, "output"),
    ("rise", {"batch_size": -3}, "batch_size"),
])
def test_bad_options_raise(tiny: Model, name: str, options: dict, match: str) -> None:
    with pytest.raises(BadArgument, match=match):
        build_method(name, tiny, **options)


def test_bad_inputs_for_the_options_raise(tiny: Model) -> None:
    with pytest.raises(BadArgument, match="does not fit"):
        Occlusion(tiny, window=20)(_inputs(1, 16), 0)
    with pytest.raises(BadArgument, match="broadcast"):
        Occlusion(tiny, window=4, baseline=torch.zeros(2, 3, 5, 5))(_inputs(1, 16), 0)


# --- two objects of different classes: the maps must move with the target -------------------

FAST_ON_LITE0 = {
    "occlusion": lambda m: Occlusion(m, window=56, stride=56, batch_size=16),
    "rise": lambda m: RISE(m, masks=64, cells=4, seed=0, batch_size=16),
    "scorecam": lambda m: ScoreCAM(m, layer="_relu_head", max_channels=24, batch_size=16),
}


@pytest.mark.parametrize("name", list(FAST_ON_LITE0))
def test_maps_find_the_object_of_each_class(lite0: Model, two_objects: Tensor, name: str) -> None:
    maps = FAST_ON_LITE0[name](lite0)(two_objects.expand(2, -1, -1, -1), [285, 967])[:, 0]
    width = maps.shape[-1]
    centred = maps - maps.mean((1, 2), keepdim=True)  # RISE maps carry a large constant offset
    balance = centred[:, :, : width // 2].mean((1, 2)) - centred[:, :, width - width // 2:].mean((1, 2))
    peaks = maps.flatten(1).argmax(1) % width
    assert balance[0] > 0 > balance[1], balance  # cat: more on the left; espresso: on the right
    assert peaks[0] < width / 2 <= peaks[1], peaks
