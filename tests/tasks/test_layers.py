"""layer_table: the rows `convscope layers` prints and the model page draws."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.errors import BadModel
from convscope.model import Model, Preprocess, list_layers
from convscope.tasks.layers import layer_table


def test_rows_auto_layer_and_parameter_count(tiny: Model) -> None:
    table = layer_table(tiny)
    assert [r.name for r in table.rows] == [r.name for r in list_layers(tiny)]
    assert table.auto is not None and table.auto.name == "relu2" and table.auto.reason
    assert table.total_params == 3 * 6 * 9 + 6 + 6 * 8 * 9 + 8 + 8 * 4 + 4
    rows = {r["name"]: r for r in table.as_json()}
    assert rows["conv2"] == {"name": "conv2", "type": "Conv2d", "params": 6 * 8 * 9 + 8,
                             "output_shape": [8, 8, 8], "map_shape": [8, 8, 8], "calls": 1}


def test_a_model_without_conv_has_no_auto_layer() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    table = layer_table(Model(net, preprocess=Preprocess(input_size=(4, 4)), name="mlp"))
    assert table.auto is None and [r.name for r in table.rows] == ["0", "1"]


class Broken(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shapes do not match\nsecond line")


def test_a_model_that_fails_gets_one_line_naming_it() -> None:
    model = Model(Broken(), preprocess=Preprocess(input_size=(5, 6)), name="broken")
    with pytest.raises(BadModel, match=r"^model 'broken' failed on a 3x5x6 input: RuntimeError: "
                                       r"shapes do not match; check") as err:
        layer_table(model)
    assert isinstance(err.value.__cause__, RuntimeError) and "\n" not in str(err.value)
