"""TCAV's speed goals (issue 21): against the passes it needs, and against Captum's TCAV.

    python -m benchmarks.check --only tcav

The work: EfficientNet-Lite0 at 224x224, layers ``_blocks.9`` and ``_relu_head``, 2 concepts of
20 images, 7 random sets of 20 (a reference and 6 runs), 20 inputs of one class (quick mode: 10
images a set, 5 random sets). The images are seeded noise: the cost does not depend on what they
show.

- ``tcav-floor``: :func:`convscope.methods.concepts.tcav.tcav` against the passes it cannot skip:
  plain forwards of every example image (no gradient, batches of 64) and one forward and
  backward of every input (the gradient to the input). The difference is the capture, the CAV
  fits, the scores and the t-tests. (On ``digits_planted``, a network of 4 M multiply-adds an
  image with 3,136 features a layer, the CAV fits weigh more: about 1.4x its passes in CPU time.)
- ``tcav-captum``: Captum's ``TCAV.interpret`` on the same sets, layers and inputs, with its
  default classifier (scikit-learn's SGD linear model on a 67/33 split), writing its
  activations and CAVs to a temporary folder as it always does.

First run (quick mode, 2 cores at a load average of 12, so every time is several times its quiet
value): tcav 21.2 s, floor 32.9 s, Captum 133 s; 0.65x the floor (turns 0.63-1.26, medians
0.94) and 0.16x Captum. The call can beat the floor: it stops each forward after the deepest
layer it reads and differentiates only down to the shallowest.
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .check import Context, Measured

LAYERS = ["_blocks.9", "_relu_head"]
TARGET = 285


def group_tcav(ctx: Context) -> list[Measured]:
    from captum.concept import TCAV, Concept
    from torch.utils.data import DataLoader

    from convscope.methods.concepts.tcav import tcav
    from convscope.model import guarded, load_model

    from .check import ratio

    model = load_model("efficientnet_lite0")
    n, runs = ctx.size(20, 8), ctx.size(6, 3)  # quick: keeps the whole --quick run under 5 minutes
    gen = torch.Generator().manual_seed(0)

    def noise() -> torch.Tensor:
        return torch.randn(n, 3, 224, 224, generator=gen)

    concepts = {"a": noise(), "b": noise()}
    randoms = [noise() for _ in range(runs + 1)]
    inputs = noise()
    examples = torch.cat([*concepts.values(), *randoms])

    def floor() -> None:
        with torch.no_grad():
            for start in range(0, len(examples), 64):
                model(examples[start:start + 64])
        for start in range(0, len(inputs), 64):
            x = inputs[start:start + 64].clone().requires_grad_(True)
            torch.autograd.grad(model(x)[:, TARGET].sum(), x)

    ours = ctx.subject(lambda: tcav(model, concepts, randoms, inputs, TARGET, LAYERS))
    sets = [Concept(i, name, DataLoader(images, batch_size=64))
            for i, (name, images) in enumerate([*concepts.items(),
                                                *((f"random{j}", r) for j, r in enumerate(randoms))])]
    reference, runs_sets = sets[len(concepts)], sets[len(concepts) + 1:]
    experiments = [[c, r] for c in sets[:len(concepts)] for r in runs_sets]
    experiments += [[reference, r] for r in runs_sets]

    def captum() -> None:
        with tempfile.TemporaryDirectory() as folder:
            TCAV(model.net, LAYERS, save_path=folder).interpret(inputs, experiments, target=TARGET)

    with guarded(model):
        turns = ctx.turns([ours, floor, captum], repeats=ctx.heavy_repeats)  # Captum: ~6x the call
    return [ratio("tcav-floor", turns, 0, 1), ratio("tcav-captum", turns, 0, 2)]
