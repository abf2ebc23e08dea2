"""The ``"auto"`` layer on torchvision's CNNs (random weights): the table of issue 12.

Each pick is the post-residual, post-activation output of the last spatial feature stage, the
map the classifier head pools: a whole stage or block (all of its channels), never one branch,
never the head's own resize (VGG/AlexNet ``avgpool``) or class map (SqueezeNet). Run under the
torchvision venv: ``PYTHONPATH=src /work/tvenv/bin/python -m pytest tests/zoo/test_auto_layer.py``.
Self-contained on purpose (no shared fixtures).
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import convscope
from convscope.model import capture, list_layers, load_model
from convscope.model.layers import choose_layer

SIZE = 128  # small, yet every last stage keeps a spatial map (AlexNet 3x3, Inception-v3 2x2)

# name -> (the auto layer, its channels, why)
EXPECTED: dict[str, tuple[str, int, str]] = {
    "resnet18": ("layer4", 512, "after the last residual add and ReLU"),
    "resnet50": ("layer4", 2048, "after the last residual add and ReLU"),
    "vgg11_bn": ("features", 512, "the last features map, not avgpool"),
    "alexnet": ("features", 256, "the last features map, not avgpool"),
    "densenet121": ("features+relu", 1024, "features after the forward's own F.relu"),
    "convnext_tiny": ("features", 768, "the whole stage (= features.7), not a residual branch"),
    "googlenet": ("inception5b", 1024, "all four branches, not one branch's BatchNorm"),
    "inception_v3": ("Mixed_7c", 2048, "all branches, not one branch's BatchNorm"),
    "squeezenet1_1": ("features", 512, "the features, not the 1000-channel class map"),
    "mobilenet_v2": ("features", 1280, "the last 1x1 conv-BN-ReLU6 of features"),
    "mobilenet_v3_small": ("features", 576, "the last 1x1 conv-BN-Hardswish of features"),
    "efficientnet_b0": ("features", 1280, "the last 1x1 conv-BN-SiLU of features"),
    "regnet_y_400mf": ("trunk_output", 440, "after the last residual add and ReLU"),
    "shufflenet_v2_x0_5": ("conv5", 1024, "the last conv-BN-ReLU before the forward's mean"),
}


def torchvision_net(name: str) -> nn.Module:
    """A torchvision model with random weights, seeded, in eval mode."""
    torch.manual_seed(0)
    options: dict[str, object] = {}
    if name in ("googlenet", "inception_v3"):
        options = {"aux_logits": False, "init_weights": True}
    return torchvision.models.get_model(name, weights=None, **options).eval()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_auto_layer_table(name: str) -> None:
    expected, channels, why = EXPECTED[name]
    model = load_model(torchvision_net(name), preprocess={"input_size": (SIZE, SIZE)})
    choice = choose_layer(model)
    assert choice.name == expected, why
    assert "last spatial feature map" in choice.reason
    rows = {i.name: i for i in list_layers(model)}
    shape = rows[expected.removesuffix("+relu")].output_shape
    assert shape is not None and shape[0] == channels and shape[1] * shape[2] > 1


def test_densenet_reads_the_map_after_its_functional_relu() -> None:
    net = torchvision_net("densenet121")
    model = load_model(net, preprocess={"input_size": (64, 64)})
    assert "ReLU function" in choose_layer(model).reason
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), capture(model, ["features", "features+relu"]) as record:
        logits = model(x)
        pre, after = record["features"], record["features+relu"]
    assert (pre < 0).any()
    torch.testing.assert_close(after, pre.relu())
    # what the head reads: logits = classifier(mean(relu(features)))
    torch.testing.assert_close(logits, net.classifier(after.mean((2, 3))))


@pytest.mark.parametrize(("name", "layer", "size"), [
    ("resnet18", "layer4", 224),  # the acceptance call, at the default input
    ("resnet50", "layer4", 96),
    ("inception_v3", "Mixed_7c", 128),
])
def test_gradcam_explains_the_whole_last_stage(name: str, layer: str, size: int) -> None:
    preprocess = None if size == 224 else {"input_size": (size, size)}
    model = load_model(torchvision_net(name), preprocess=preprocess)
    image = torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))
    result = convscope.explain(model, image, method="gradcam")
    assert result.layer == layer and result.layer_reason
    assert result.summary()["layer"] == layer
    assert torch.isfinite(result.values).all() and result.values.abs().sum() > 0
