"""Every registered method on every zoo architecture: it runs, leaves the model unharmed and gives
a finite, non-empty map (or, for CAM on a model without a GAP + linear head, refuses in one line).

Options are cut down to keep the suite cheap (few steps, samples, masks); the properties that the
methods promise are checked in test_properties.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import convscope
from convscope import BadModel
from convscope.methods.registry import get_method, method_list
from convscope.model import Model, forward_until, guarded
from tests.model_safety import assert_unharmed, snapshot
from tests.zoo.conftest import Arch, finite_nonzero

CHEAP: dict[str, dict[str, object]] = {
    "integrated_gradients": {"steps": 8},
    "lime": {"samples": 24, "segments": 12},
    "kernel_shap": {"samples": 24, "segments": 12},
    "gradient_shap": {"samples": 4, "draws": 2},
    "deeplift_shap": {"draws": 2},
    "occlusion": {"window": 16, "stride": 16},
    "rise": {"masks": 24, "cells": 4},
    "scorecam": {"max_channels": 8},
    "ablationcam": {"max_channels": 8},
    "smoothgrad": {"samples": 2},
}


def test_cheap_options_name_registered_methods() -> None:
    assert set(CHEAP) <= set(convscope.method_names())


def run(model: Model, x: Tensor, method: str, layer: str) -> convscope.Explanation:
    before = snapshot(model)
    try:
        return convscope.explain(model, x, method=method, layer=layer, **CHEAP.get(method, {}))
    finally:
        assert_unharmed(model, before)


@pytest.mark.parametrize("method", method_list("all"))  # D-RISE: tests/zoo/test_detectors.py
def test_method_runs_unharmed_with_a_finite_map(zoo_model: Model, zoo_arch: Arch, zoo_inputs: Tensor,
                                                method: str) -> None:
    layer = zoo_arch.layer if get_method(method).needs_layer else "auto"
    if method == "cam" and not zoo_arch.gap_linear:
        with pytest.raises(BadModel, match="CAM needs a model that ends in global average pooling"):
            run(zoo_model, zoo_inputs, method, layer)
        return
    result = run(zoo_model, zoo_inputs, method, layer)
    assert result.values.shape[0] == 2 and result.values.shape[-2:] == zoo_inputs.shape[-2:]
    finite_nonzero(result.values, f"{method} on {zoo_arch.name}")


def test_gradcam_on_the_auto_layer(zoo_model: Model, zoo_arch: Arch, zoo_inputs: Tensor) -> None:
    """The call a user makes first: no layer given. The map must show the output the model uses
    from its last spatial stage (a layer whose output equals it, e.g. MobileNet's ``features.18``
    for ``features``, is as good)."""
    result = run(zoo_model, zoo_inputs, "gradcam", "auto")
    finite_nonzero(result.values, f"gradcam on {zoo_arch.name}'s auto layer {result.layer!r}")
    assert result.layer is not None
    with guarded(zoo_model), torch.no_grad():
        picked = forward_until(zoo_model, zoo_inputs, result.layer)[result.layer]
        expected = forward_until(zoo_model, zoo_inputs, zoo_arch.layer)[zoo_arch.layer]
    if zoo_arch.relu_after:
        expected = expected.relu()
    assert picked.shape == expected.shape and torch.equal(picked, expected), (
        f"auto picked {result.layer!r}, whose output is not that of {zoo_arch.layer!r}"
        f"{' + ReLU' if zoo_arch.relu_after else ''}")
