"""Layer listing (one row per call), name resolution with did-you-mean, and the 'auto' layer
on hand-written networks in every zoo style (tests/zoo/test_auto_layer.py: on torchvision)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.errors import BadLayer
from convscope.model import Model, Preprocess, auto_layer, get_layer, list_layers, resolve_layer
from convscope.model.layers import choose_layer, parse_layer, pick_layer
from tests.model.styled_nets import (
    DenseStyle,
    Nested,
    ResStyle,
    SharedAcross,
    SqueezeStyle,
    VggStyle,
)


def test_list_layers_shapes(lite0: Model) -> None:
    infos = {i.name: i for i in list_layers(lite0)}
    assert infos["_conv_stem"].output_shape == (32, 112, 112)
    assert infos["_blocks.15._project_conv"].output_shape == (320, 7, 7)
    assert infos["_fc"].output_shape == (1000,)
    assert infos["_fc"].params == 1280 * 1000 + 1000
    assert not lite0.net._conv_stem._forward_hooks


def test_auto_layer_is_last_spatial_map(lite0: Model) -> None:
    assert auto_layer(lite0) == "_relu_head"
    assert resolve_layer(lite0, "auto") == "_relu_head"


def test_auto_layer_uses_execution_order() -> None:
    class Reordered(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(4, 2)
            self.late = nn.Conv2d(4, 4, 3, padding=1)
            self.early = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.late(F.relu(self.early(x)))
            return self.head(x.mean((2, 3)))

    assert auto_layer(Reordered()) == "late"


def test_auto_layer_needs_a_conv() -> None:
    with pytest.raises(BadLayer, match="no convolution"):
        auto_layer(nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, 2)))


def test_bad_layer_suggests_names(lite0: Model) -> None:
    with pytest.raises(BadLayer, match=r"did you mean _conv_head"):
        get_layer(lite0, "_conv_haed")
    with pytest.raises(BadLayer, match="convscope layers"):
        get_layer(lite0, "qqqqqqqqqqqqqqqq")


@pytest.mark.parametrize(("net", "expected"), [
    (ResStyle, "layer2"),  # after the residual add and the block's second ReLU call
    (DenseStyle, "features+relu"),  # the forward's own F.relu is part of what the head reads
    (VggStyle, "features"),  # not avgpool, which only resizes for the classifier
    (SqueezeStyle, "features"),  # not the class map of the 1x1 head convolution
    (Nested, "backbone"),  # the outermost container whose output is the last map
])
def test_auto_layer_in_every_style(net: type[nn.Module], expected: str) -> None:
    model = Model(net(), preprocess=Preprocess(input_size=(16, 16)))
    choice = choose_layer(model)
    assert choice.name == expected
    assert "last spatial feature map" in choice.reason
    assert ("ReLU function" in choice.reason) == expected.endswith("+relu")
    assert pick_layer(model, "auto") == choice and resolve_layer(model, "auto") == expected
    assert pick_layer(model, expected).reason == "named by the caller"


def test_reused_module_gets_one_row_per_call() -> None:
    rows = {i.name: i for i in list_layers(ResStyle(), torch.zeros(1, 3, 8, 8))}
    assert "layer1.0.relu" not in rows
    first, second = rows["layer1.0.relu:0"], rows["layer1.0.relu:1"]
    assert first.calls == second.calls == 2 and first.output_shape == (4, 8, 8)
    assert first.order < rows["layer1.0.conv2"].order < second.order < rows["layer1.0"].order
    assert rows["layer1"].calls == 1 and rows["layer1"].as_dict()["calls"] == 1
    assert rows["fc"].output_shape == (3,)


def test_layer_names_with_call_index_and_relu() -> None:
    net = ResStyle()
    assert get_layer(net, "layer1.0.relu:1") is net.layer1[0].relu
    assert get_layer(net, "layer1.0.relu:1+relu") is net.layer1[0].relu
    assert parse_layer("a.b:2+relu").name == "a.b:2+relu"
    assert (parse_layer("a.b:2+relu").module, parse_layer("a.b:2").call) == ("a.b", 2)
    with pytest.raises(BadLayer, match="call number"):
        get_layer(net, "layer1.0.relu:x")
    with pytest.raises(BadLayer, match=r"did you mean layer1\.0\.relu"):
        get_layer(net, "layer1.0.rleu:1")


def test_shared_module_is_listed_under_its_first_name() -> None:
    rows = {i.name for i in list_layers(SharedAcross(), torch.zeros(1, 3, 6, 6))}
    assert {"a.1:0", "a.1:1"} <= rows and not any(r.startswith("b.1") for r in rows)


def test_dry_pass_leaves_other_threads_alone() -> None:
    """The pass watches functions with a torch function mode, which is thread-local."""
    import threading

    seen: list[bool] = []
    barrier = threading.Barrier(2)

    class Slow(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            barrier.wait(timeout=10)  # the other thread runs while this pass is inside
            barrier.wait(timeout=10)
            return x

    net = nn.Sequential(nn.Conv2d(3, 3, 1), Slow(), nn.Conv2d(3, 3, 1))
    other = nn.Conv2d(3, 3, 1)

    def run_other() -> None:
        barrier.wait(timeout=10)
        seen.append(torch.overrides._get_current_function_mode() is None)
        other(torch.zeros(1, 3, 4, 4))
        barrier.wait(timeout=10)

    thread = threading.Thread(target=run_other)
    thread.start()
    list_layers(net, torch.zeros(1, 3, 4, 4))
    thread.join()
    assert seen == [True]
