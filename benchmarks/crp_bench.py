"""CRP for K channels against K LRP passes and against zennit-crp, on the embedded model.

    python -m benchmarks.crp_bench [--channels 8] [--repeats 3] [--layer _blocks.10]

Rows, timed in turns (:func:`benchmarks.timing.alternate`) on one image of the cat:

* ``crp``: ``convscope.crp(model, x, layer=LAYER, channels=[0..K-1])``, the public call (its
  method object, with the folded copy of the network, reused from the call before, as
  ``explain()`` does);
* ``K LRP``: K calls of ``explain(model, x, method="lrp")``, what K conditional heatmaps would
  cost one LRP pass at a time (the issue's goal: CRP at most 1.2x of it);
* ``zennit-crp``: ``crp.attribution.CondAttribution`` with zennit's EpsilonGammaBox (BN merged,
  the residual adds through zennit's ``Sum``), the K conditions as one batch of K rows, on a
  deep copy (zennit changes the modules it is given). zennit-crp is a test-only extra
  (``pip install --no-deps zennit-crp``).
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

import torch

LAYER = "_blocks.10"


def zennit_crp(model: Any, x: torch.Tensor, target: int, channels: list[int], layer: str) -> Any:
    """A closure running zennit-crp's conditional heatmaps on a twin of ``model``; None when absent."""
    from .lrp_bench import import_zennit, zennit_epsilon_gamma_box

    zennit = import_zennit()
    try:
        from crp.attribution import CondAttribution
    except ImportError:
        return None
    assert zennit is not None
    twin = copy.deepcopy(model)
    composite = zennit_epsilon_gamma_box(zennit, model, x)
    attribution = CondAttribution(twin.net, no_param_grad=False)
    conditions = [{layer: [c], "y": [target]} for c in channels]

    def run() -> Any:
        data = x.repeat(len(channels), 1, 1, 1).requires_grad_(True)
        return attribution(data, conditions, composite).heatmap

    return run


def group_crp(ctx: Any) -> list[Any]:
    """The check's group: CRP for K channels beside K LRP passes and beside zennit-crp."""
    from convscope import crp, explain
    from convscope.model import guarded

    from .check import _model_and_cat, ratio

    model, x, target = _model_and_cat()
    channels = list(range(ctx.size(8, 8)))
    ours = ctx.subject(lambda: crp(model, x, target, LAYER, channels=channels))

    def lrp_passes() -> None:
        for _ in channels:
            explain(model, x, method="lrp", target=target)

    fns = [ours, lrp_passes]
    theirs = zennit_crp(model, x, target, channels, LAYER)
    if theirs is not None:
        fns.append(theirs)
    with guarded(model):
        turns = ctx.turns(fns)
    found = [ratio("crp-lrp", turns, 0, 1)]
    if theirs is not None:
        found.append(ratio("crp-zennit-crp", turns, 0, 2))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    class Ctx:
        repeats = args.repeats

        def size(self, full: int, quick: int) -> int:
            return args.channels

        def subject(self, fn: Any) -> Any:
            return fn

        def turns(self, fns: list[Any]) -> Any:
            from .timing import alternate

            return alternate(fns, device=torch.device("cpu"), repeats=self.repeats)

    for m in group_crp(Ctx()):
        print(m)


if __name__ == "__main__":
    main()
