"""The forward-only fast path on a torchvision ResNet under ``explain()`` (issue 23).

explain() keeps the logits of the method's first forward through a hook of convscope's own, which
the fast path's copy carries; its dry pass must not take that hook's value check for the model's,
so ResNet-18 (BN folded, channels-last, frozen TorchScript graph) runs every chunk on the frozen
graph, and the maps equal those of the eager copy (freezing switched off).
"""

from __future__ import annotations

import pytest
import torch

from convscope import explain, load_image
from convscope.model import FastForward
from tests.fast_forwards import recorded_fast_forwards
from tests.zoo.conftest import ZOO, build


def test_resnet18_runs_occlusion_on_the_frozen_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    method, options = "occlusion", {"window": 8, "stride": 4}  # 225 windows: tracing pays
    model = build(ZOO["resnet18"])
    x = model.preprocess([load_image("sample:cat")])
    init = FastForward.__init__  # put back below, for the eager run
    made = recorded_fast_forwards(monkeypatch)
    fast = explain(model, x, method=method, target=285, **options)
    assert made and all(f.frozen is not None and f.dropped == [] for f in made), \
        [(f.frozen, f.dropped) for f in made]
    assert made[0].fold_info.folded == 20  # every conv -> BN pair of ResNet-18
    monkeypatch.setattr(FastForward, "__init__", init)
    monkeypatch.setattr(FastForward, "freeze", lambda self, example: None)  # eager copy only
    eager = explain(model, x, method=method, target=285, **options)
    scale = float(eager.values.abs().max())
    torch.testing.assert_close(fast.values, eager.values, rtol=1e-3, atol=1e-4 * scale)
