"""timm's LeViT and RepVGG against CAM's head check and LRP's canonizer (random weights)."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch

import convscope
from convscope.errors import BadModel
from convscope.methods.attribution import LRP
from convscope.methods.attribution.cam import CAM
from convscope.model import Model, guarded
from tests.zoo.timm_archs import TIMM, build


def _timm(family: str, calibrated: bool) -> tuple[Model, torch.Tensor]:
    """The zoo's timm architecture (tests/zoo/timm_archs.py) and the cat and the espresso."""
    model = build(TIMM[family], calibrated=calibrated)
    images = [convscope.load_image("sample:cat"), convscope.load_image("sample:coffee")]
    return model, model.preprocess(images)


def test_cam_refuses_levit_whose_logits_average_two_heads() -> None:
    """At timm's init the logits are ~1e-4; neither head alone produces them."""
    model, x = _timm("levit", calibrated=False)
    with guarded(model), torch.no_grad():
        assert model(x).abs().max() < 1e-2
    with pytest.raises(BadModel, match="does not reproduce"):
        CAM(model, layer="stages.2")(x, 1)


def test_lrp_on_repvgg_explains_the_merged_network() -> None:
    """LRP-epsilon on repvgg_a0 returned 1e24 times the logit: its branches are now merged for the
    call, and its result is that of timm's own re-parameterized network; the sum's miss (biases
    absorb their share) is said with the layers."""
    model, x = _timm("repvgg", calibrated=True)
    method = LRP(model, composite="epsilon")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        relevance = method(x, 1)
    assert method.merged and model.net.stages[0][0].reparam_conv is None
    merged = Model(timm.utils.reparameterize_model(model.net), preprocess=model.spec, name="merged")
    torch.testing.assert_close(relevance, LRP(merged, composite="epsilon")(x, 1), rtol=1e-3, atol=1e-5)
    with guarded(model), torch.no_grad():
        logit = model(x)[:, 1]
    miss = ((relevance.sum((1, 2, 3)) - logit).abs() / logit.abs()).max()
    said = [str(w.message) for w in caught if "not conserved" in str(w.message)]
    assert bool(miss < 1) or any("reparam_conv" in s and "times the score" in s for s in said)
