"""The map as a soft mask: Average Drop and Increase in Confidence, and infidelity.

Average Drop and Increase in Confidence -- Chattopadhay et al. 2018, "Grad-CAM++", Sec. 6.1, as
torchcam computes them: each map (channels summed) is min-max scaled to [0, 1] at its own
resolution, upsampled bilinearly to the input and multiplied into the model input (so a pixel the
map ignores becomes model-input zero: the normalization mean). With ``p`` the target's softmax
probability on the image and ``q`` on the masked image, Average Drop is ``relu(p - q) / p``
(lower is better) and Increase in Confidence is ``[q > p]`` (higher is better), per image. They
assume a map whose high values alone keep the evidence; a constant map leaves the image black.

Infidelity -- Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations", Sec. 2,
with Captum's definition (``captum.metrics.infidelity``, ``normalize=True``): for perturbations
``I ~ N(0, sigma^2)`` of the model input, ``E[(beta I.a - (f(x) - f(x - I)))^2]`` with ``f`` the
target's logit and ``beta = E[I.a (f(x) - f(x - I))] / E[(I.a)^2]`` the scale that fits best, so
the score does not depend on the map's scale (maps of different methods are compared).
``samples`` perturbations per image; lower is better. A map of the input's shape (per channel)
is used as is; any other is summed over channels, resized to the input and shared by the channels.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import check_positive
from ...model import FastForward, Model, default_batch_size, guarded
from .faithfulness import reduce_maps


def soft_masks(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, 1, H, W) maps min-max scaled to [0, 1] per image, then upsampled (torchcam's order)."""
    m = reduce_maps(maps)
    low, high = m.amin((2, 3), keepdim=True), m.amax((2, 3), keepdim=True)
    m = (m - low) / (high - low).clamp(min=1e-12)
    return F.interpolate(m, size=size, mode="bilinear", align_corners=False)


def confidence_change(model: Model, inputs: Tensor, maps: Tensor, targets: Tensor,
                      fast: FastForward | None = None) -> tuple[Tensor, Tensor]:
    """(drop, increase), each (B,): Average Drop's and Increase in Confidence's terms per image."""
    fast = fast if fast is not None else FastForward(model)
    inputs = inputs.detach()
    masked = soft_masks(maps, (inputs.shape[-2], inputs.shape[-1])).to(inputs) * inputs
    with guarded(model):
        probs = fast.scores(torch.cat([inputs, masked]), targets.repeat(2), softmax=True)
    p, q = probs.view(2, -1)
    return (p - q).relu() / p.clamp(min=1e-12), (q > p).float()


def attribution_like(maps: Tensor, inputs: Tensor) -> Tensor:
    """``maps`` as a (B, C, H, W) attribution of ``inputs``: per-channel maps as they are,
    others summed over channels, resized to the input and shared by its channels."""
    if maps.shape == inputs.shape:
        return maps.detach().float()
    return reduce_maps(maps, "sum", (inputs.shape[-2], inputs.shape[-1])).expand_as(inputs).float()


def infidelity(model: Model, inputs: Tensor, maps: Tensor, targets: Tensor, *, samples: int = 10,
               sigma: float = 0.1, seed: int = 0, batch_size: int | None = None,
               fast: FastForward | None = None) -> Tensor:
    """(B,) normalized infidelity (see the module doc); perturbation ``i`` of image ``b`` is the
    ``(i, b)``-th draw of ``sigma * randn`` from a generator seeded with ``seed``."""
    check_positive("samples", samples, integer=True)
    fast = fast if fast is not None else FastForward(model)
    inputs = inputs.detach()
    attribution = attribution_like(maps, inputs).to(inputs.device)
    noise = sigma * torch.randn((samples, *inputs.shape), generator=torch.Generator().manual_seed(seed))
    noise = noise.to(inputs)
    batch = int(batch_size) if batch_size is not None else default_batch_size(inputs.device)
    rows = samples * inputs.shape[0]

    def perturbed() -> Iterator[Tensor]:
        flat = noise.flatten(0, 1)
        for start in range(0, rows, batch):
            part = torch.arange(start, min(start + batch, rows), device=inputs.device)
            yield inputs[part % inputs.shape[0]] - flat[part]

    with guarded(model):
        before = fast.scores(inputs, targets)
        after = fast.scores(perturbed(), targets.repeat(samples), total=rows).view(samples, -1)
    change = (before[None] - after).double()
    dot = (noise * attribution).flatten(2).sum(2).double()
    beta = (dot * change).mean(0) / dot.square().mean(0).clamp(min=1e-300)
    return (beta * dot - change).square().mean(0).float()
