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
follows the model). Quantus's ``SmoothMPRT`` differs in three ways, so its numbers are not ours:
it randomizes every module that has ``reset_parameters`` (batch norms included) by calling it
after ``torch.manual_seed(seed + 1)``, where the cascade here re-draws each block's weights from
one seeded generator (:mod:`.sanity`) and stops after ``max_steps`` blocks; it draws new noise
for every layer (here the same copies at every step, so steps differ only by the model); and
its per-sample average also counts its "original" entry (the given maps against the denoised
original ones, about 1), because it skips a key named "orig" (Quantus 0.6.0,
``recompute_average_correlation_per_sample``), which the paper's average over layers does not.

Efficient MPRT -- Hedström et al. 2024, "A Fresh Look at Sanity Checks for Saliency Maps" (xAI
2024), Sec. 3: the relative rise of the map's discrete entropy (a ``bins``-bin histogram of its
values, Quantus's ``discrete_entropy``) when every layer is randomized at once, ``(H(a_random) -
H(a)) / H(a)``; higher is better (a randomized model should give noise). It needs no similarity
measure and one randomized model. Quantus's ``EfficientMPRT`` computes the same entropy and ratio
(tests/zoo/test_metrics_quantus.py, on the same pair of maps); its randomized model differs
(``reset_parameters`` after a global seed, as for Smooth MPRT).

Random logit -- Sixt, Granz & Landgraf 2020, "When Explanations Lie: Why Many Modified BP
Attributions Fail" (ICML), Sec. 5: the SSIM between the map for the target and the map for a random
other class (seeded), on min-max scaled absolute maps (:func:`.sanity.ssim`, 2-D, a Gaussian
window); lower is better (the map depends on the class). Quantus's ``RandomLogit`` draws the other
class the same way (uniform over the rest) but flattens both maps before scikit-image's SSIM: a
1-D SSIM over 7 consecutive values in raster order, on the raw signed maps. SSIM is an image
measure (Wang et al. 2004) and the paper compares saliency maps as images, which the 2-D one
does. With Quantus's ``similarity_func`` set to this SSIM and the same other classes, the two give
the same numbers (tests/zoo/test_metrics_quantus.py).
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
                 seed: int = 0, others: Tensor | None = None) -> Tensor:
    """(B,) SSIM of the target's map with a random other class's map (see the module doc).

    ``others``: (B,) the other classes to use instead of the seeded draw."""
    inputs, size = inputs.detach(), (inputs.shape[-2], inputs.shape[-1])
    if others is None:
        with guarded(model), torch.no_grad():
            classes = model(inputs[:1]).shape[-1]
        others = other_classes(targets, classes, seed)
    elif others.shape != targets.shape or bool((others == targets).any()):
        raise BadArgument("others must be one class per image, each different from its target")
    others = explain(model, inputs, others)
    return ssim(_at(others, size).abs().sum(1, keepdim=True), _at(maps, size).abs().sum(1, keepdim=True))
