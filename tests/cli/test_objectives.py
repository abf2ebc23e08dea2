"""The CLI's objective spelling parses into the library's Objective objects."""

from __future__ import annotations

import pytest
import torch

from convscope.cli.objectives import parse_objective
from convscope.errors import BadArgument
from convscope.methods.features import Context


@pytest.mark.parametrize(("text", "name", "layers", "batch"), [
    ("channel:_blocks.8:3", "channel(_blocks.8:3)", ("_blocks.8",), None),
    ("channel:_blocks.8:3,7,9", "channel(_blocks.8:[3,7,9])", ("_blocks.8",), 3),
    ("channel:x:0-3", "channel(x:[0,1,2,3])", ("x",), 4),
    ("neuron:_blocks.4:5", "neuron(_blocks.4:5)", ("_blocks.4",), None),
    ("neuron:_blocks.4:5:3:2", "neuron(_blocks.4:5@3,2)", ("_blocks.4",), None),
    ("layer:_blocks.6", "deepdream(_blocks.6)", ("_blocks.6",), None),
    ("layer:_blocks.6:l2", "deepdream(_blocks.6:l2)", ("_blocks.6",), None),
    ("logit:285", "logit(285)", (), None),
    ("logit:Egyptian cat", "logit(Egyptian cat)", (), None),
    ("prob:285", "prob(285)", (), None),
    ("logprob:1,2", "logprob([1, 2])", (), 2),
    ("direction:a:1,0,-0.5", "direction(a:3d)", ("a",), None),
    ("channel:a:1,2 + 20*diversity:a", "channel(a:[1,2]) + 20*diversity(a)", ("a",), 2),
    ("logit:285 + -1*logit:281", "logit(285) - logit(281)", (), None),
])
def test_parse(text: str, name: str, layers: tuple[str, ...], batch: int | None) -> None:
    obj = parse_objective(text)
    assert (obj.name, obj.layers, obj.batch) == (name, layers, batch)
    assert obj.reads_logits == ("logit" in text or "prob" in text)


def test_parsed_label_resolves_against_the_models_labels(ctx: Context) -> None:
    assert torch.allclose(parse_objective("logit:two")(ctx), ctx.logits[:, 2])


@pytest.mark.parametrize("text", ["", "channel", "chanel:a:3", "channel:a:x", "channel:a",
                                  "neuron:a", "layer:", "direction:a:1,b", "logit:1 + "])
def test_parse_errors(text: str) -> None:
    with pytest.raises(BadArgument):
        parse_objective(text)
