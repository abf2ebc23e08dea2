"""Deletion / insertion curves, pointing game, box energy and localization IoU.

A linear model gives properties that cannot be faked: its exact attribution (weight x pixel change)
orders pixels so that deletion falls fastest and insertion rises fastest of all orderings, and the
curve's end points are the scores of the untouched input and of the pure substrate. On the real
network Grad-CAM must beat random maps of the same (layer) resolution and its own reversal.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.data import load_image
from convscope.errors import BadArgument
from convscope.methods.evaluation.faithfulness import (
    box_energy,
    box_mask,
    causal_curve,
    deletion,
    insertion,
    localization_iou,
    pixel_ranks,
    pointing_game,
    substrate,
)
from convscope.model import Model, Preprocess
from convscope.tasks.explain import explain
from tests.model_safety import assert_unharmed, snapshot


class PixelLinear(nn.Module):
    """Class 0 logit = sum(w * x) over the first channel, class 1 logit = 0."""

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.w = nn.Parameter(torch.rand(size, size, generator=gen) * 0.3)

    def forward(self, x: Tensor) -> Tensor:
        s = (x[:, 0] * self.w).flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def linear_model() -> Model:
    return Model(PixelLinear().train(), preprocess=Preprocess(input_size=(8, 8), mean=(0.0,) * 3,
                                                               std=(1.0,) * 3), labels=["a", "b"])



def test_end_points_and_area_follow_the_definition() -> None:
    model = linear_model()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 8, 8, generator=gen)
    maps = torch.rand(3, 1, 8, 8, generator=gen)
    before = snapshot(model)
    curve = deletion(model, x, maps, 0, steps=16, substrate_kind="black", batch_size=5)
    assert curve.scores.shape == (3, 17) and curve.auc.shape == (3,)
    assert curve.fractions[0] == 0 and curve.fractions[-1] == 1
    assert torch.allclose(curve.fractions, torch.arange(17) / 16)  # 64 pixels: 4 per step
    with torch.no_grad():
        p_input = model(x).softmax(-1)[:, 0]
        p_black = model(torch.zeros_like(x)).softmax(-1)[:, 0]
    assert torch.allclose(curve.scores[:, 0], p_input, atol=1e-6)
    assert torch.allclose(curve.scores[:, -1], p_black, atol=1e-6)
    p = curve.scores  # RISE code: (sum(p) - p0/2 - pn/2) / n
    assert torch.allclose(curve.auc, (p.sum(1) - p[:, 0] / 2 - p[:, -1] / 2) / 16, atol=1e-6)
    ins = insertion(model, x, maps, 0, steps=16, substrate_kind="blur", sigma=1.0)
    with torch.no_grad():
        p_blur = model(substrate(model, x, "blur", 1.0)).softmax(-1)[:, 0]
    assert torch.allclose(ins.scores[:, 0], p_blur, atol=1e-6)
    assert torch.allclose(ins.scores[:, -1], p_input, atol=1e-6)
    logit = deletion(model, x, maps, lambda logits: logits[:, 0], steps=4)  # a callable: as is
    assert torch.allclose(logit.scores[:, 0], model(x)[:, 0].detach(), atol=1e-5)
    assert torch.allclose(logit.scores[:, -1], torch.zeros(3), atol=1e-6)
    assert_unharmed(model, before)  # train mode kept, no grads, no hooks


def test_exact_attribution_is_the_best_ordering_of_a_linear_model() -> None:
    model = linear_model()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)) + 0.5
    exact = (model.net.w * x[0, 0])[None, None]  # weight x (pixel - black)
    randoms = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    maps = torch.cat([exact, randoms, -exact])
    xs = x.expand(len(maps), -1, -1, -1)
    dele = deletion(model, xs, maps, 0, steps=64).auc
    black = model.normalize(torch.zeros_like(x))
    ins = insertion(model, xs, maps, 0, steps=64, substrate_kind=black).auc
    assert dele[0] < dele[1:].min() and dele[-1] == dele.max()
    assert ins[0] > ins[1:].max() and ins[-1] == ins.min()


def test_batch_size_and_chunking_do_not_change_the_curve() -> None:
    model = linear_model()
    gen = torch.Generator().manual_seed(4)
    x, maps = torch.rand(2, 3, 8, 8, generator=gen), torch.rand(2, 3, 4, 4, generator=gen)
    a = causal_curve(model, x, maps, "top1", mode="insertion", steps=10, batch_size=1)
    b = causal_curve(model, x, maps, "top1", mode="insertion", steps=10, batch_size=64)
    assert torch.allclose(a.scores, b.scores, atol=1e-6)


def test_ties_are_broken_by_a_seeded_shuffle_not_raster_order() -> None:
    flat = torch.zeros(1, 1, 6, 6)
    flat[0, 0, 5, 5] = 1.0
    ranks = pixel_ranks(flat, seed=0)
    assert ranks[0, 35] == 0 and sorted(ranks[0].tolist()) == list(range(36))
    assert not torch.equal(ranks[0, :35], torch.arange(1, 36))
    assert torch.equal(ranks, pixel_ranks(flat, seed=0))
    assert not torch.equal(ranks, pixel_ranks(flat, seed=1))


@pytest.fixture(scope="module")
def cat_gradcam(lite0: Model) -> tuple[Tensor, Tensor]:
    x = lite0.preprocess(load_image("sample:cat"))
    return x, explain(lite0, x, "gradcam", target=285).raw


def test_gradcam_beats_random_maps_and_its_reversal_on_the_cat(lite0: Model, cat_gradcam) -> None:
    """Which random maps: deletion with pixel-noise maps measures how badly scattered black pixels
    hurt the network (they score a LOWER deletion AUC than any smooth map: 0.02 against Grad-CAM's
    0.15 at 20 steps), so deletion is compared with random maps of Grad-CAM's own 7x7 resolution.
    Insertion is compared with pixel-noise maps: on this close-up, where nearly every region is
    cat, smooth 7x7 random maps insert about as well as Grad-CAM (0.50 against 0.49)."""
    x, cam = cat_gradcam
    gen = torch.Generator().manual_seed(0)
    smooth = torch.rand(3, 1, *cam.shape[-2:], generator=gen)
    noise = torch.rand(2, 1, *x.shape[-2:], generator=gen)
    before = snapshot(lite0)
    maps = torch.cat([cam, -cam, smooth])
    dele = deletion(lite0, x.expand(len(maps), -1, -1, -1), maps, 285, steps=10).auc
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear")
    maps = torch.cat([cam, -cam, noise])
    ins = insertion(lite0, x.expand(len(maps), -1, -1, -1), maps, 285, steps=10).auc
    assert_unharmed(lite0, before)
    assert dele[0] < dele[2:].mean() < dele[1], dele
    assert ins[0] > ins[1] > ins[2:].max(), ins


def test_pointing_game_counts_hits_with_15_pixel_tolerance() -> None:
    maps = torch.zeros(5, 1, 100, 100)
    box = torch.tensor([40, 40, 60, 60])  # rows/cols 40..59
    for i, (r, c) in enumerate([(50, 50), (59, 74), (59, 76), (71, 71), (72, 72)]):
        maps[i, 0, r, c] = 1.0
    hits = pointing_game(maps, box)
    # (59, 74): 15 px right of col 59 -> hit; (59, 76): 17 px -> miss;
    # (71, 71): 12*sqrt(2) = 16.97 from the corner -> miss even though each axis is < 15.
    assert hits.tolist() == [True, True, False, False, False]
    assert pointing_game(maps, box, tolerance=17).tolist() == [True, True, True, True, False]
    flat = torch.ones(1, 1, 100, 100)
    assert pointing_game(flat, box).tolist() == [False]  # a flat map points nowhere
    assert pointing_game(flat, torch.tensor([0, 0, 100, 100])).tolist() == [True]


def test_box_energy_is_the_positive_mass_inside() -> None:
    maps = torch.zeros(3, 1, 20, 20)
    maps[0, 0, 2:4, 2:4] = 3.0  # 12 inside
    maps[0, 0, 15, 15] = 4.0  # 4 outside
    maps[0, 0, 10, 10] = -50.0  # negative evidence is ignored
    maps[1, 0, 2, 2] = -1.0  # no positive mass at all
    maps[2] = 1.0
    boxes = torch.tensor([[0, 0, 5, 5]] * 2 + [[0, 0, 10, 20]])
    assert torch.allclose(box_energy(maps, boxes), torch.tensor([0.75, 0.0, 0.5]))
    assert box_mask(boxes, (20, 20)).sum((1, 2, 3)).tolist() == [25, 25, 200]


def test_localization_iou_of_the_cam_box() -> None:
    maps = torch.zeros(2, 1, 40, 40)
    maps[:, 0, 10:20, 10:30] = 1.0
    boxes = torch.tensor([[10, 10, 20, 30], [10, 20, 20, 40]])
    assert torch.allclose(localization_iou(maps, boxes), torch.tensor([1.0, 1 / 3]))
    per_channel = maps.expand(-1, 3, -1, -1) / 3  # channels are summed first
    assert torch.allclose(localization_iou(per_channel, boxes), torch.tensor([1.0, 1 / 3]))


@pytest.mark.parametrize(("call", "needle"), [
    (lambda m, x: deletion(m, x, torch.rand(3, 1, 8, 8)), "one map per input"),
    (lambda m, x: deletion(m, x, torch.rand(2, 8)), "expected (B, C, H, W)"),
    (lambda m, x: deletion(m, x, torch.rand(2, 1, 8, 8), substrate_kind="grey"), "choose from"),
    (lambda m, x: deletion(m, x, torch.rand(2, 1, 8, 8), steps=0), "positive integer"),
    (lambda m, x: insertion(m, x, torch.rand(2, 1, 8, 8), batch_size=0), "positive integer"),
    (lambda m, x: pointing_game(torch.rand(2, 1, 8, 8), torch.zeros(3, 4)), "one box per map"),
    (lambda m, x: box_energy(torch.rand(2, 1, 8, 8), torch.zeros(2, 3)), "(top, left, bottom, right)"),
])
def test_bad_arguments_are_refused_clearly(call, needle: str) -> None:
    with pytest.raises(BadArgument, match=None) as err:
        call(linear_model(), torch.rand(2, 3, 8, 8))
    assert needle in str(err.value)


class Trap(nn.Module):
    """A train-mode network whose forward raises once it has run ``calls`` times."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2)
        self.calls, self.count = calls, 0

    def forward(self, x: Tensor) -> Tensor:
        self.count += 1
        if self.count > self.calls:
            raise RuntimeError("trap")
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("calls", [0, 2])
def test_a_forward_that_raises_leaves_the_model_unharmed(calls: int) -> None:
    model = Model(Trap(calls).train(), preprocess=Preprocess(input_size=(8, 8)))
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="trap"):
        deletion(model, torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8), 0, steps=4, batch_size=2)
    assert_unharmed(model, before)
    assert model.training and model.net.bn.training


def test_user_model_is_untouched_in_train_mode_on_the_real_network(lite0: Model) -> None:
    model = copy.deepcopy(lite0).train()
    x = F.interpolate(lite0.preprocess(load_image("sample:coffee")), size=64)
    before = snapshot(model)
    curve = insertion(model, x, torch.rand(1, 1, 64, 64), "top1", steps=2)
    assert curve.scores.shape == (1, 3) and torch.isfinite(curve.auc).all()
    assert_unharmed(model, before)
