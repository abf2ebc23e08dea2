"""Sanity checks (Adebayo et al. 2018): cascading randomization and random labels.

The published finding, qualitatively, on the embedded network: Grad-CAM and the gradient change
when the top of the network is re-initialized, guided backprop hardly does. Rank correlation is
checked against scipy, re-initialization against its documented distribution, and every check
must leave the user's model exactly as it was.
"""

from __future__ import annotations

import pytest
import torch
from scipy import stats
from torch import Tensor, nn

from convscope.data import load_image
from convscope.errors import BadArgument, BadLayer
from convscope.methods.evaluation.random_labels import random_label_check
from convscope.methods.evaluation.sanity import (
    cascading_randomization,
    randomization_steps,
    reinitialize,
    spearman,
    ssim,
)
from convscope.model import Model
from tests.model_safety import assert_unharmed, snapshot


def test_steps_go_from_the_logits_down_with_norms_joining_their_conv(lite0: Model) -> None:
    steps = randomization_steps(lite0)
    names = [n for n, _ in steps]
    assert names[:3] == ["_fc", "_conv_head", "_blocks.15"] and names[-2:] == ["_blocks.0", "_conv_stem"]
    assert len(steps) == 19 and dict(steps)["_conv_head"] == ["_conv_head", "_bn1"]
    assert dict(steps)["_conv_stem"] == ["_conv_stem", "_bn0"]
    assert len(dict(steps)["_blocks.15"]) == 6  # expand, depthwise, project convs + 3 BNs
    layers = randomization_steps(lite0, "layer")
    assert [n for n, _ in layers][:3] == ["_fc", "_conv_head", "_blocks.15._project_conv"]
    assert dict(layers)["_blocks.15._project_conv"] == ["_blocks.15._project_conv", "_blocks.15._bn2"]


def test_cascading_randomization_reproduces_the_published_finding(lite0: Model) -> None:
    x = lite0.preprocess(load_image("sample:cat"))
    before = snapshot(lite0)
    results = {m: cascading_randomization(lite0, x, m, 285, max_steps=3)
               for m in ("gradcam", "saliency", "guided_backprop")}
    assert_unharmed(lite0, before)
    gbp, cam, grad = results["guided_backprop"], results["gradcam"], results["saliency"]
    assert gbp.steps == ["_fc", "_conv_head", "_blocks.15"] and gbp.spearman_abs.shape == (3, 1)
    assert gbp.spearman_abs.min() > 0.9 and gbp.flagged  # guided backprop hardly changes
    assert cam.spearman_abs.min() < 0.3 and not cam.flagged  # Grad-CAM is destroyed
    assert grad.spearman_abs.max() < 0.6 and not grad.flagged  # so is the gradient
    assert gbp.lowest - max(cam.lowest, grad.lowest) > 0.3
    assert [r["step"] for r in gbp.rows()] == gbp.steps


def test_spearman_matches_scipy_with_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 1, 6, 6), generator=gen).float()  # many ties
    b = a + torch.randn(3, 1, 6, 6, generator=gen)
    expected = [stats.spearmanr(a[i].flatten(), b[i].flatten()).statistic for i in range(3)]
    assert torch.allclose(spearman(a, b), torch.tensor(expected, dtype=torch.float32), atol=1e-6)
    assert spearman(a, torch.ones_like(a)).tolist() == [0.0] * 3  # a constant map shares nothing
    assert torch.allclose(spearman(a, -a), -torch.ones(3))


def test_ssim_is_one_for_identical_maps_and_ignores_scale() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(2, 1, 20, 20, generator=gen)
    assert torch.allclose(ssim(a, 3 * a + 1), torch.ones(2), atol=1e-5)
    assert (ssim(a, torch.rand(2, 1, 20, 20, generator=gen)) < 0.3).all()


def test_reinitialization_is_seeded_and_follows_the_default_family() -> None:
    conv, bn = nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8)
    bn.running_mean.fill_(2.0)
    reinitialize([conv, bn], torch.Generator().manual_seed(0))
    bound = 1 / (4 * 9) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.bias.abs().max() <= bound
    assert conv.weight.std() > bound / 2  # spread over the range, not collapsed
    assert torch.equal(bn.weight, torch.ones(8)) and torch.equal(bn.bias, torch.zeros(8))
    assert torch.equal(bn.running_mean, torch.full((8,), 2.0))  # buffers are kept
    again = nn.Conv2d(4, 8, 3)
    reinitialize([again], torch.Generator().manual_seed(0))
    assert torch.equal(again.weight, conv.weight)
    reinitialize([again], torch.Generator().manual_seed(0), "gaussian")
    assert abs(float(again.weight.detach().std()) - bound) < 0.3 * bound


def test_explicit_steps_granularity_and_errors(tiny: Model) -> None:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tiny.train()
    before = snapshot(tiny)
    result = cascading_randomization(tiny, x, "gradient_x_input", "top1",
                                     granularity=["fc", ["conv2", "conv1"]], with_ssim=True)
    assert_unharmed(tiny, before)
    assert result.steps == ["fc", "conv2"] and result.layers[1] == ["conv2", "conv1"]
    assert result.spearman.shape == (2, 2) and result.ssim is not None and result.ssim.shape == (2, 2)
    assert result.spearman.abs().max() <= 1
    with pytest.raises(BadLayer, match="did you mean"):
        cascading_randomization(tiny, x, "saliency", granularity=["fcc"])
    with pytest.raises(BadArgument, match="callable"):
        cascading_randomization(tiny, x, "saliency", lambda logits: logits[:, 0])
    with pytest.raises(BadArgument, match="choose from"):
        cascading_randomization(tiny, x, "saliency", granularity="blocks")


def _toy_data(n: int = 8) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(5)
    return torch.randn(n, 3, 16, 16, generator=gen), torch.arange(n) % 4


@pytest.mark.parametrize("train", ["head", "all"])
def test_random_labels_are_memorized_on_a_copy(tiny: Model, train: str) -> None:
    images, labels = _toy_data()
    tiny.train()
    before = snapshot(tiny)
    result = random_label_check(tiny, images[:3], "gradcam", "top1", images=images, labels=labels,
                                layer="conv2", train=train, lr=0.05)
    assert_unharmed(tiny, before)
    assert result.fit_accuracy >= 0.9, result  # the permuted labels were learned
    assert result.head == ("fc" if train == "head" else None)
    assert result.spearman_abs.shape == (3,) and result.spearman.abs().max() <= 1
    with pytest.raises(BadArgument, match="at least 2 classes"):
        random_label_check(tiny, images[:1], "saliency", images=images, labels=torch.zeros(8))


def test_random_head_on_the_real_network_fits_the_permuted_labels(lite0: Model) -> None:
    """Head-only retraining on the real network memorizes the permuted labels. It is a weak test
    of Grad-CAM: its map is a positive mix of the same activation maps whatever the new head's
    weights, and stays close to the original (rank correlation 0.98 here, see random_labels.py)."""
    names = ["sample:cat", "sample:coffee", "sample:astronaut", "sample:rocket"]
    images = lite0.preprocess([load_image(n) for n in names])
    labels = torch.tensor([285, 967, 0, 1])
    before = snapshot(lite0)
    cam = random_label_check(lite0, images[:1], "gradcam", 285, images=images, labels=labels)
    assert_unharmed(lite0, before)
    assert cam.fit_accuracy == 1.0 and cam.head == "_fc" and cam.trained == "head"
    assert -1 <= cam.spearman_abs.item() <= 1
