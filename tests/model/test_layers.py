"""Layer listing, name resolution with did-you-mean, and the 'auto' layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.errors import BadLayer
from convscope.model import Model, auto_layer, get_layer, list_layers, resolve_layer


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
