"""TCAV's speed goals (issue 21): against the passes it needs, and against Captum's TCAV.

    python -m benchmarks.check --only tcav

The work: ``digits_planted`` at ``block3`` and ``block4``, 2 concepts (the striped cue and, as a
second concept, other held-out digits with the cue) of 50 images, 11 random sets of 50 (a
reference and 10 runs), 100 inputs of class 7 (quick mode: 30 images a set, 5 random sets).

- ``tcav-floor``: :func:`convscope.methods.concepts.tcav.tcav` against the passes it cannot skip:
  plain forwards of every example image (no gradient, batches of 64) and one forward and
  backward of every input (the gradient to the input, batches of 64). The difference is the
  capture, the CAV fits, the scores and the t-tests.
- ``tcav-captum``: Captum's ``TCAV.interpret`` on the same sets, layers and inputs, with its
  default classifier (scikit-learn's SGD linear model on a 67/33 split), writing its
  activations and CAVs to a temporary folder as it always does.
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .check import Context, Measured

LAYERS = ["block3", "block4"]


def group_tcav(ctx: Context) -> list[Measured]:
    from captum.concept import TCAV, Concept
    from torch.utils.data import DataLoader

    from convscope.data.planted import CUE_CLASS, class_set, concept_set, random_set
    from convscope.methods.concepts.tcav import tcav
    from convscope.model import guarded, load_model

    from .check import ratio

    model = load_model("digits_planted")
    prep = model.preprocess
    n, runs = ctx.size(50, 30), ctx.size(10, 4)
    concepts = {"stripes": prep(concept_set(n).images), "stripes-b": prep(concept_set(n, seed=1).images)}
    randoms = [prep(random_set(i, n=n).images) for i in range(runs + 1)]
    inputs = prep(class_set(CUE_CLASS, n=2 * n).images)
    examples = torch.cat([*concepts.values(), *randoms])

    def floor() -> None:
        with torch.no_grad():
            for start in range(0, len(examples), 64):
                model(examples[start:start + 64])
        for start in range(0, len(inputs), 64):
            x = inputs[start:start + 64].clone().requires_grad_(True)
            torch.autograd.grad(model(x)[:, CUE_CLASS].sum(), x)

    ours = ctx.subject(lambda: tcav(model, concepts, randoms, inputs, CUE_CLASS, LAYERS))
    sets = [Concept(i, name, DataLoader(images, batch_size=64))
            for i, (name, images) in enumerate([*concepts.items(),
                                                *((f"random{j}", r) for j, r in enumerate(randoms))])]
    reference, runs_sets = sets[len(concepts)], sets[len(concepts) + 1:]
    experiments = [[c, r] for c in sets[:len(concepts)] for r in runs_sets]
    experiments += [[reference, r] for r in runs_sets]

    def captum() -> None:
        with tempfile.TemporaryDirectory() as folder:
            TCAV(model.net, LAYERS, save_path=folder).interpret(inputs, experiments, target=CUE_CLASS)

    with guarded(model):
        turns = ctx.turns([ours, floor, captum])
    return [ratio("tcav-floor", turns, 0, 1), ratio("tcav-captum", turns, 0, 2)]
