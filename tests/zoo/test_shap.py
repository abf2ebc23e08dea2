"""The SHAP family on a torchvision CNN and a vision transformer (random weights), and the empty-map
warning on torchvision's inception_v3 exactly as initialized (issue 22, items 2 and 4).

Every registered method already runs on every zoo CNN (test_methods.py); here the SHAP methods
also run on a transformer, KernelSHAP's efficiency (sum = f(x) - f(every superpixel off)) is
checked on both, and LIME's silent all-zero map on the uncalibrated inception_v3 must now warn.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch
from torch import Tensor

import convscope
from convscope.methods.attribution import DeepLiftShap, GradientShap, KernelShap, Lime
from convscope.model import Model
from tests.model_safety import assert_unharmed, snapshot
from tests.zoo.conftest import ZOO, build, finite_nonzero
from tests.zoo.test_transformers import _small_vit


def _photos(model: Model) -> Tensor:
    return model.preprocess([convscope.load_image("sample:cat"), convscope.load_image("sample:coffee")])


@pytest.fixture(scope="module", params=["resnet18", "small-vit"])
def model(request: pytest.FixtureRequest) -> Model:
    return _small_vit() if request.param == "small-vit" else build(ZOO["resnet18"])


@pytest.mark.parametrize("method", [GradientShap, DeepLiftShap, KernelShap])
def test_shap_methods_on_a_cnn_and_a_transformer(model: Model, method: type) -> None:
    x = _photos(model)
    options = {"samples": 24, "segments": 12} if method is KernelShap else {"draws": 2}
    if method is GradientShap:
        options["samples"] = 4
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DeepLIFT's gap on attention is reported, and expected
        out = method(model, **options)(x, 1)
    assert_unharmed(model, before)
    assert out.shape[0] == 2 and out.shape[-2:] == x.shape[-2:]
    finite_nonzero(out, f"{method.__name__} on {model.name}")


def test_kernel_shap_is_efficient_on_a_cnn_and_a_transformer(model: Model) -> None:
    x = _photos(model)
    result = KernelShap(model, samples=40, segments=10, baseline="black").explain_superpixels(x, 1)
    with torch.no_grad():
        f_x = model(x)[:, 1].double()
        f_off = model(model.normalize(torch.zeros_like(x)))[:, 1].double()
    scale = f_x.abs() + f_off.abs()
    assert ((result.weights.sum(1) - (f_x - f_off)).abs() <= 1e-4 * scale + 1e-5).all()


def test_lime_on_inception_v3_at_random_init_warns_of_its_saturated_softmax() -> None:
    """At torchvision's own initialization (batch norms uncalibrated) the logits reach ~1e11 and the
    top class's probability is exactly 1.0, so LIME's perturbed scores cannot vary: its map is all
    zero, and it must say why instead of returning it silently. At 224 pixels (at 107 and 160 some
    perturbed copies flip to another class, so the scores vary and the map is not empty); 16
    samples keep it short (the issue's 64 give the same)."""
    model = build(replace(ZOO["inception_v3"], side=224), calibrated=False)
    x = _photos(model)[:1]
    with torch.no_grad():
        logits = model(x)
    assert logits.abs().max() > 1e10 and logits.softmax(-1).max() == 1.0  # the premise
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = Lime(model, samples=16, segments=20)(x, "top1")
    said = [str(w.message) for w in caught if "never varied" in str(w.message)]
    assert (out == 0).all()
    assert len(said) == 1 and "saturated softmax" in said[0] and "score='logit'" in said[0], said
