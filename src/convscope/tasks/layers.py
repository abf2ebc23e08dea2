"""``layer_table``: the model's layers with type, output shape and parameter count, and the
layer ``"auto"`` picks. ``convscope layers`` prints it and the web app's model page draws it
as a tree, so both show the same rows."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from ..errors import BadLayer, BadModel, ConvscopeError
from ..model import LayerInfo, Model, list_layers
from ..model.layers import LayerChoice, choose_layer


@dataclass
class LayerTable:
    """Every named module in tree order (one row per call of a module that runs several times)."""

    model: str
    rows: list[LayerInfo]
    auto: LayerChoice | None
    """The layer ``"auto"`` resolves to and why; ``None`` for a model without a conv layer."""
    total_params: int

    def as_json(self) -> list[dict[str, Any]]:
        """The rows as ``convscope layers --json`` prints them."""
        return [row.as_dict() for row in self.rows]


def layer_table(model: Model) -> LayerTable:
    """The rows from one dry forward pass, and the ``"auto"`` layer. A model whose forward
    fails on an input of its preprocessing size raises ``BadModel`` naming the error."""
    try:
        rows = list_layers(model)
    except ConvscopeError:
        raise
    except Exception as err:  # the model's own code failed: one line, the cause kept for --debug
        size = "x".join(map(str, (model.channels, *model.input_size)))
        detail = (str(err).strip().splitlines() or [""])[0][:300]
        raise BadModel(f"model {model.name!r} failed on a {size} input: {type(err).__name__}: {detail}; "
                       "check that it runs on inputs of its preprocess input_size") from err
    auto = None
    with suppress(BadLayer):  # a model without a conv has no auto layer; the table stands alone
        auto = choose_layer(model)
    return LayerTable(model.name, rows, auto, sum(p.numel() for p in model.parameters()))
