"""layer_table: the rows `convscope layers` prints and the model page draws."""

from __future__ import annotations

import torch
from torch import nn

from convscope.model import Model, Preprocess, list_layers
from convscope.tasks.layers import layer_table


def test_rows_auto_layer_and_parameter_count(tiny: Model) -> None:
    table = layer_table(tiny)
    assert [r.name for r in table.rows] == [r.name for r in list_layers(tiny)]
    assert table.auto is not None and table.auto.name == "relu2" and table.auto.reason
    assert table.total_params == 3 * 6 * 9 + 6 + 6 * 8 * 9 + 8 + 8 * 4 + 4
    rows = {r["name"]: r for r in table.as_json()}
    assert rows["conv2"] == {"name": "conv2", "type": "Conv2d", "params": 6 * 8 * 9 + 8,
                             "output_shape": [8, 8, 8], "calls": 1}


def test_a_model_without_conv_has_no_auto_layer() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    table = layer_table(Model(net, preprocess=Preprocess(input_size=(4, 4)), name="mlp"))
    assert table.auto is None and [r.name for r in table.rows] == ["0", "1"]
