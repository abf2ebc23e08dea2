"""Network dissection: a hand-checked IoU, the planted cue's detectors, and its bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.data.planted import planted_digits
from convscope.errors import BadArgument, BadLayer
from convscope.methods.concepts.dissect import dissect
from convscope.model import Model, load_model


@pytest.fixture(scope="module")
def planted() -> Model:
    torch.set_num_threads(2)
    return load_model("digits_planted")


def test_iou_by_hand_on_an_identity_layer() -> None:
    """A 'layer' that passes the image through: unit 0 fires on bright pixels, so its mask is the
    top pixels, and IoU with a mask of exactly those pixels is 1, with their complement 0."""
    net = nn.Sequential(nn.Identity(), nn.Flatten())
    images = torch.zeros(4, 1, 8, 8)
    images[:, 0, 2:4, 2:4] = 1.0  # 16 of 256 pixels: the top 6.25%
    bright = images[:, 0] > 0
    result = dissect(net, images, {"bright": bright, "dark": ~bright}, "0", quantile=0.9)
    assert result.iou.shape == (1, 2) and result.labels == ["bright"]
    assert result.iou[0, 0].item() == pytest.approx(1.0) and result.iou[0, 1].item() == 0.0
    assert result.coverage[0].item() == pytest.approx(16 / 256)


def test_planted_cue_has_detectors_well_above_chance(planted: Model) -> None:
    data = planted_digits("heldout", "always")
    masks = {"stripes": data.cue_masks, "ink": data.ink_masks}
    for layer, floor in (("block1", 0.04), ("block4", 0.015)):
        result = dissect(planted, planted.preprocess(data.images), masks, layer)
        cue_units = [k for k, label in enumerate(result.labels) if label == "stripes"]
        assert len(cue_units) >= 2, layer
        best = max(cue_units, key=lambda k: result.iou[k, 0].item())
        assert result.iou[best, 0] > floor, (layer, result.iou[best])
        assert result.iou[best, 0] > 5 * result.chance[best, 0], layer


def test_bad_inputs_are_one_line(planted: Model) -> None:
    data = planted_digits("heldout", "always")
    x = planted.preprocess(data.images[:8])
    with pytest.raises(BadLayer, match="'pool' has no spatial maps"):
        dissect(planted, x, {"stripes": data.cue_masks[:8]}, "pool")
    with pytest.raises(BadLayer, match="'fc'"):
        dissect(planted, x, {"stripes": data.cue_masks[:8]}, "fc")
    with pytest.raises(BadArgument, match=r"'stripes' are \(8, 14, 14\) but the images are 8 of 28x28"):
        dissect(planted, x, {"stripes": data.cue_masks[:8, ::2, ::2]}, "block3")
    with pytest.raises(BadArgument, match=r"masks of concept 'stripes' are \(7, 28, 28\)"):
        dissect(planted, x, {"stripes": data.cue_masks[:7]}, "block3")


def test_model_is_left_as_it_was(planted: Model) -> None:
    data = planted_digits("heldout", "always")
    planted.net.train()
    try:
        dissect(planted, planted.preprocess(data.images[:16]), {"stripes": data.cue_masks[:16]}, "block2")
        assert planted.net.training and all(m.training for m in planted.net.modules())
    finally:
        planted.net.eval()
    net = planted.net
    assert all(p.grad is None and p.requires_grad for p in net.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in net.modules())
