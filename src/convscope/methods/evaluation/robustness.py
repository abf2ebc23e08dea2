"""How much a map moves when the input barely does: max- and average-sensitivity.

Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations", Sec. 3 (Def. 3.1), as
Quantus computes them (``MaxSensitivity``, ``AvgSensitivity``): ``samples`` copies of each input
get uniform noise U(-radius, radius) on every value (model-input units), the method is re-run on
them for the same target, and each copy scores ``||a' - a||_F / ||a||_F`` (the relative change of
the map, Quantus's default norms). Max-sensitivity is the largest over the copies, average
sensitivity the mean; lower is better (a stable map). They assume the method is deterministic or
nearly so (a sampling method's own noise counts as sensitivity) and that a change of ``radius``
does not change what the model sees; Quantus's option to drop copies whose prediction changed
is not taken (its default neither). The maps are compared at the resolution the method returns.

All copies of a chunk of images are explained in one call of the method (``B * samples`` rows
with the targets repeated), where Quantus calls it once per copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ...errors import check_positive
from ...model import Model

if TYPE_CHECKING:  # the registry imports this module to register its metrics
    from .metrics import Explainer


def explain_rows(explain: Explainer, model: Model, inputs: Tensor, targets: Tensor,
                 chunk: int = 32) -> Tensor:
    """The method's maps for many rows, ``chunk`` rows per call (float, detached)."""
    check_positive("chunk", chunk, integer=True)
    return torch.cat([explain(model, inputs[s:s + chunk], targets[s:s + chunk]).detach().float()
                      for s in range(0, inputs.shape[0], chunk)])


def sensitivities(model: Model, inputs: Tensor, maps: Tensor, targets: Tensor, explain: Explainer, *,
                  samples: int = 10, radius: float = 0.2, seed: int = 0,
                  chunk: int = 32) -> Tensor:
    """(B, samples) relative change of each map under each noisy copy of its input."""
    check_positive("samples", samples, integer=True)
    generator = torch.Generator().manual_seed(seed)
    inputs = inputs.detach()
    batch = inputs.shape[0]
    noise = (torch.rand((samples, *inputs.shape), generator=generator) * 2 - 1) * radius
    copies = (inputs[None] + noise.to(inputs)).flatten(0, 1)  # row i * B + b: copy i of image b
    per_row = explain_rows(explain, model, copies, targets.repeat(samples), chunk)
    reference = maps.detach().float().to(per_row.device)
    change = (per_row.float().view(samples, batch, -1) - reference.reshape(1, batch, -1)).norm(dim=2)
    return (change / reference.reshape(batch, -1).norm(dim=1).clamp(min=1e-30)).T


def max_sensitivity(model: Model, inputs: Tensor, maps: Tensor, targets: Tensor, explain: Explainer,
                    **options: float) -> Tensor:
    """(B,) the largest relative change over the noisy copies."""
    return sensitivities(model, inputs, maps, targets, explain, **options).amax(1)  # type: ignore[arg-type]


def avg_sensitivity(model: Model, inputs: Tensor, maps: Tensor, targets: Tensor, explain: Explainer,
                    **options: float) -> Tensor:
    """(B,) the mean relative change over the noisy copies."""
    return sensitivities(model, inputs, maps, targets, explain, **options).mean(1)  # type: ignore[arg-type]
