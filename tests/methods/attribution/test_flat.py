"""No silent empty map (issue 22, item 4): a method whose scores never varied, or whose gradient is
exactly zero, warns and names the cause; a healthy model gives no such warning.

Two toy models built to know the cause: ``Saturated`` scales a small CNN's logits by 1e11 (as
torchvision's inception_v3 does at random init), so every class probability is exactly 0.0 or 1.0
in float32 whatever the input; ``Constant`` returns logits that do not depend on the input.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

from convscope.methods.registry import build_method
from convscope.model import Model, Preprocess
from tests.conftest import TinyCNN

PERTURBATION = {
    "occlusion": {"window": 4, "stride": 4},
    "rise": {"masks": 16, "cells": 3},
    "lime": {"samples": 24, "segments": 6},
    "kernel_shap": {"samples": 24, "segments": 6},
    "scorecam": {},
}
GRADIENT = {
    "saliency": {},
    "integrated_gradients": {"steps": 4, "rule": "gausslegendre"},
    "gradient_shap": {"samples": 4, "draws": 2},
    "deeplift": {},
    "deeplift_shap": {"draws": 2},
}
PROBABILITY = {"lime": {}, "kernel_shap": {"score": "probability"}, "rise": {"output": "probability"}}
"""The perturbation methods that score probabilities, and the option that makes them do so."""


class Saturated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = TinyCNN()

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) * 1e11


class Constant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = TinyCNN()
        self.register_buffer("logits", torch.tensor([0.5, 2.0, -1.0, 0.0]))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) * 0 + self.logits  # the input still flows through: a layer to read


def _model(net: nn.Module) -> Model:
    torch.manual_seed(0)
    return Model(net.eval(), preprocess=Preprocess(input_size=(16, 16)), name=type(net).__name__)


def _image() -> Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _run(model: Model, name: str, options: dict[str, object]) -> tuple[Tensor, list[str]]:
    method = build_method(name, model, None, **options)  # Score-CAM: the "auto" layer
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = method(_image(), 1)
    return out, [str(w.message) for w in caught if "never varied" in str(w.message)
                 or "is all zero" in str(w.message)]


@pytest.mark.parametrize("name", sorted(PROBABILITY))
def test_a_saturated_softmax_is_named(name: str) -> None:
    model = _model(Saturated())
    with torch.no_grad():
        p = model(_image()).softmax(-1)
    assert ((p == 0) | (p == 1)).all()  # the premise: float32 probabilities pinned
    out, said = _run(model, name, {**PERTURBATION[name], **PROBABILITY[name]})
    assert len(said) == 1, said
    assert "saturated softmax" in said[0] and "samples 0, 1" in said[0] and "logit" in said[0]
    assert "1e+11" in said[0] or "e+1" in said[0]  # the size of the logits
    if name != "rise":  # LIME's and KernelSHAP's maps are all zero; RISE's is flat
        assert (out == 0).all()


@pytest.mark.parametrize("name", sorted(PERTURBATION))
def test_a_constant_output_is_named_by_every_perturbation_method(name: str) -> None:
    _, said = _run(_model(Constant()), name, PERTURBATION[name])
    assert len(said) == 1 and "constant output" in said[0] and name in said[0], said


@pytest.mark.parametrize("name", sorted(GRADIENT))
def test_a_zero_gradient_is_named(name: str) -> None:
    out, said = _run(_model(Constant()), name, GRADIENT[name])
    assert (out == 0).all()
    assert len(said) == 1 and "is all zero" in said[0] and "constant output" in said[0], said


@pytest.mark.parametrize("name", sorted(PERTURBATION) + sorted(GRADIENT))
def test_a_model_whose_scores_move_gives_no_such_warning(name: str) -> None:
    options = {**PERTURBATION.get(name, {}), **GRADIENT.get(name, {})}
    out, said = _run(_model(TinyCNN()), name, options)
    assert said == [] and out.flatten(1).abs().amax(1).gt(0).all()


def test_logits_of_1e11_do_not_silence_logit_scores() -> None:
    """The cause is the softmax, not the model: scoring logits gives a map and no warning."""
    model = _model(Saturated())
    out, said = _run(model, "kernel_shap", {**PERTURBATION["kernel_shap"], "score": "logit"})
    assert said == [] and (out.flatten(1).abs().amax(1) > 0).all()


@pytest.mark.parametrize("name", sorted(PERTURBATION) + sorted(GRADIENT))
def test_the_warning_points_at_the_callers_line_through_explain(name: str) -> None:
    """convscope.errors.warn: the warning names this file, not a frame of convscope (explain(),
    the method's __call__, a hook under torch's module call), however deep it was raised."""
    from convscope import explain

    options = {**PERTURBATION.get(name, {}), **GRADIENT.get(name, {})}
    model = _model(Constant())
    for call in (lambda: explain(model, _image(), method=name, target=1, **options),
                 lambda: build_method(name, model, None, **options)(_image(), 1)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        ours = [w for w in caught if "never varied" in str(w.message) or "is all zero" in str(w.message)]
        assert len(ours) == 1 and ours[0].filename == __file__, [(w.filename, str(w.message)) for w in caught]
