"""torchvision's segmenters (random weights, 64x64 inputs) explained through a region target.

They return a dict with ``"out"`` (B, 21, H, W); a :class:`~convscope.types.Region` reads it as
it is (no ``model_output=``). Checked: the model-safety contract, finite non-empty maps, the
"auto" layer (the last feature map before the per-pixel classifier), and agreement with
pytorch-grad-cam's ``SemanticSegmentationTarget`` (the class logit summed over a mask, our
``reduce="sum"``; with ``"mean"`` the map is the same up to a factor, which the Pearson r
ignores). Definitions coincide once pytorch-grad-cam sees the ``"out"`` tensor through a
wrapper, as its tutorial does; it normalizes each map to [0, 1] after resizing, we do not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
from torch import Tensor, nn
from torchvision.models import get_model

import convscope
from convscope.model import Model, Preprocess
from convscope.model.layers import get_layer
from convscope.types import Region
from tests.model_safety import assert_unharmed, snapshot

SIDE = 64
SEGMENTERS = {  # name -> what "auto" picks: the last map before the per-pixel classifier
    "fcn_resnet50": "classifier.2",
    "deeplabv3_mobilenet_v3_large": "classifier.3",
    "lraspp_mobilenet_v3_large": None,
}
CAMS = ["fcn_resnet50", "deeplabv3_mobilenet_v3_large"]
"""LR-ASPP adds two per-pixel classifiers (low and high), and "auto" takes the first of them
(``classifier.low_classifier``), whose Grad-CAM is empty at random init; its backbone's maps are
~1e-11 there too. Only its gradient maps are checked here."""


@pytest.fixture(scope="module", params=list(SEGMENTERS))
def segmenter(request: pytest.FixtureRequest) -> tuple[str, Model]:
    torch.manual_seed(0)
    net = get_model(request.param, weights=None, weights_backbone=None, num_classes=21).eval()
    return request.param, Model(net, preprocess=Preprocess((SIDE, SIDE)), name=request.param)


def _inputs() -> Tensor:
    return torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))


def _mask() -> Tensor:
    mask = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    mask[10:40, 20:50] = True
    return mask


@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_contract_and_finite_maps(segmenter: tuple[str, Model], method: str) -> None:
    name, model = segmenter
    if method == "gradcam" and name not in CAMS:
        method = "gradient_x_input"
    before = snapshot(model)
    result = convscope.explain(model, _inputs(), method=method, target=Region(3, mask=_mask()))
    assert_unharmed(model, before)
    values = result.values
    assert values.shape[0] == 2 and values.shape[-2:] == (SIDE, SIDE)
    assert torch.isfinite(values).all() and (values.flatten(1).abs().amax(1) > 0).all()
    assert result.explained is not None and "region: class 3" in result.explained[0]
    if method == "gradcam":
        wanted = SEGMENTERS[name]
        assert result.layer is not None
        assert result.layer.startswith("classifier" if wanted is None else wanted)


class _Out(nn.Module):
    """pytorch-grad-cam reads a tensor: the segmenter's ``"out"`` (its tutorial's wrapper)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)["out"]


def test_gradcam_agrees_with_pytorch_grad_cam(segmenter: tuple[str, Model]) -> None:
    name, model = segmenter
    if name not in CAMS:  # (see CAMS) saliency is checked against autograd instead
        x = _inputs().requires_grad_(True)
        (model.net(x)["out"][:, 3] * _mask()).sum().backward(inputs=[x])
        ours = convscope.explain(model, x.detach(), method="saliency",
                                 target=Region(3, mask=_mask(), reduce="sum"))
        torch.testing.assert_close(ours.values, x.grad.abs().amax(1, keepdim=True))
        return
    x, mask = _inputs(), _mask()
    ours = convscope.explain(model, x, method="gradcam", target=Region(3, mask=mask, reduce="sum"))
    cam = GradCAM(model=_Out(model.net), target_layers=[get_layer(model.net, ours.layer or "")])
    try:
        target = SemanticSegmentationTarget(3, mask.numpy().astype(np.float32))
        theirs = cam(input_tensor=x, targets=[target, target])
    finally:  # pytorch-grad-cam calls backward(): the parameters' .grad must not stay
        cam.activations_and_grads.release()
        model.net.zero_grad(set_to_none=True)
    for a, b in zip(ours.values[:, 0].double().flatten(1).numpy(), theirs.reshape(2, -1)):
        assert float(np.corrcoef(a, b)[0, 1]) >= 0.99
