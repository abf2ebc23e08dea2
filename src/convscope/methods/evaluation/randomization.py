"""Does the map depend on the model and on the class? Smooth MPRT, efficient MPRT, random logit.

Every test here changes a DEEP COPY of the model (the user's model is only read) and re-runs the
method through ``explain(model, inputs, targets)`` for the same classes.

Smooth MPRT -- Hedström et al. 2023, "Sanity Checks Revisited: An Exploration to Repair the Model
Parameter Randomisation Test" (XAI in Action, NeurIPS workshop), Sec. 4: the cascading
randomization of Adebayo et al. 2018 (:mod:`.sanity`: its steps, from the logits down, and its
re-initialization), with each map denoised by averaging the method over ``samples`` noisy copies of
the input (Gaussian noise of std ``noise`` times the image's value range; the last copy is the
image itself, as in Quantus; the same copies at every step, where Quantus draws new ones). The
score is the Spearman rank correlation of the absolute denoised maps with the original's, averaged
over the ``max_steps`` steps (Quantus's ``return_average_correlation``); lower is better (the map
follows the model).

Efficient MPRT -- Hedström et al. 2024, "A Fresh Look at Sanity Checks for Saliency Maps" (xAI
2024), Sec. 3: the relative rise of the map's discrete entropy (a ``bins``-bin histogram of its
values, Quantus's ``discrete_entropy``) when every layer is randomized at once, ``(H(a_random) -
H(a)) / H(a)``; higher is better (a randomized model should give noise). It needs no similarity
measure and one randomized model.

Random logit -- Sixt, Granz & Landgraf 2020, "When Explanations Lie: Why Many Modified BP
Attributions Fail" (ICML), Sec. 5: the SSIM between the map for the target and the map for a random
other class (seeded), on min-max scaled absolute maps (:func:`.sanity.ssim`, a Gaussian window);
lower is better (the map depends on the class). Quantus's ``RandomLogit`` uses scikit-image's SSIM
(7x7 uniform window) on the raw maps: the definitions differ.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import BadArgument, check_positive
from ...model import Model, guarded
from ...model.layers import get_layer
from .robustness import explain_rows
from .sanity import Init, randomization_steps, reinitialize, spearman, ssim

if TYPE_CHECKING:  # the registry imports this module to register its metrics
    from .metrics import Explainer


def _at(maps: Tensor, size: tuple[int, int]) -> Tensor:
    maps = maps.detach().float()
    if tuple(maps.shape[-2:]) != size:
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps


def noisy_copies(inputs: Tensor, samples: int, noise: float, generator: torch.Generator) -> Tensor:
    """(samples * B, C, H, W): ``samples - 1`` noisy copies of the batch, then the batch itself."""
    span = (inputs.flatten(1).amax(1) - inputs.flatten(1).amin(1)).view(-1, 1, 1, 1)
    eps = torch.randn((samples - 1, *inputs.shape), generator=generator).to(inputs) * noise * span
    return torch.cat([(inputs[None] + eps).flatten(0, 1), inputs])


def smoothed(model: Model, copies: Tensor, targets: Tensor, explain: Explainer,
             size: tuple[int, int]) -> Tensor:
    """(B, 1, H, W) the absolute mean of the method's maps over the copies of each image."""
    samples = copies.shape[0] // targets.shape[0]
    maps = explain_rows(explain, model, copies, targets.repeat(samples))
    mean = maps.view(samples, targets.shape[0], *maps.shape[1:]).mean(0)
    return _at(mean, size).abs().sum(1, keepdim=True)


def smooth_mprt(model: Model, inputs: Tensor, targets: Tensor, explain: Explainer, **options: Any) -> Tensor:
    """(B,) mean Spearman correlation of the denoised maps over the cascade (see the module doc)."""
    return smooth_mprt_steps(model, inputs, targets, explain, **options).mean(0)


def smooth_mprt_steps(model: Model, inputs: Tensor, targets: Tensor, explain: Explainer, *,
                      samples: int = 10, noise: float = 0.1, max_steps: int | None = 5,
                      init: Init = "default", seed: int = 0) -> Tensor:
    """(steps, B) Spearman correlation of the absolute denoised maps with the original's after
    each step of the cascade (top ``max_steps`` steps, from the logits down)."""
    check_positive("samples", samples, integer=True)
    steps = randomization_steps(model)[:max_steps]
    if not steps:
        raise BadArgument("the model has no parameterized layers to randomize")
    size = (inputs.shape[-2], inputs.shape[-1])
    generator = torch.Generator().manual_seed(seed)
    copies = noisy_copies(inputs.detach(), samples, noise, generator)  # the same for every step
    reference = smoothed(model, copies, targets, explain, size)
    clone = copy.deepcopy(model)
    rho = []
    for _, names in steps:
        reinitialize([m for n in names for m in get_layer(clone, n).modules()], generator, init)
        rho.append(spearman(smoothed(clone, copies, targets, explain, size), reference))
    return torch.stack(rho)


def discrete_entropy(maps: Tensor, bins: int = 100) -> Tensor:
    """(B,) entropy (nats) of a ``bins``-bin histogram of each map's values over their range."""
    out = []
    for row in maps.detach().float().flatten(1):
        counts = torch.histc(row, bins=bins, min=float(row.min()), max=float(row.max()))
        p = counts / counts.sum().clamp(min=1)
        out.append(-torch.special.xlogy(p, p).sum())
    return torch.stack(out)


def randomized_copy(model: Model, *, init: Init = "default", seed: int = 0) -> Model:
    """A deep copy of ``model`` with every parameterized layer re-initialized."""
    clone = copy.deepcopy(model)
    names = [n for _, group in randomization_steps(clone) for n in group]
    reinitialize([get_layer(clone, n) for n in names], torch.Generator().manual_seed(seed), init)
    return clone


def efficient_mprt(model: Model, inputs: Tensor, maps: Tensor, targets: Tensor, explain: Explainer, *,
                   bins: int = 100, init: Init = "default", seed: int = 0) -> Tensor:
    """(B,) relative rise of the maps' discrete entropy on the fully randomized copy."""
    check_positive("bins", bins, integer=True)
    random = explain(randomized_copy(model, init=init, seed=seed), inputs.detach(), targets)
    before = discrete_entropy(maps, bins)
    return (discrete_entropy(random, bins) - before) / before.clamp(min=1e-12)


def other_classes(targets: Tensor, classes: int, seed: int = 0) -> Tensor:
    """(B,) a class other than each target, uniformly at random (seeded)."""
    if classes < 2:
        raise BadArgument(f"random logit needs a model with 2 or more classes, not {classes}")
    draw = torch.randint(0, classes - 1, targets.shape, generator=torch.Generator().manual_seed(seed))
    draw = draw.to(targets.device)
    return draw + (draw >= targets).long()


def random_logit(model: Model, inputs: Tensor, maps: Tensor, targets: Tensor, explain: Explainer, *,
                 seed: int = 0) -> Tensor:
    """(B,) SSIM of the target's map with a random other class's map (see the module doc)."""
    inputs, size = inputs.detach(), (inputs.shape[-2], inputs.shape[-1])
    with guarded(model), torch.no_grad():
        classes = model(inputs[:1]).shape[-1]
    others = explain(model, inputs, other_classes(targets, classes, seed))
    return ssim(_at(others, size).abs().sum(1, keepdim=True), _at(maps, size).abs().sum(1, keepdim=True))
