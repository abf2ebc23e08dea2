"""Texture synthesis from Gram matrices (Gatys, Ecker & Bethge 2015, Eq. 1-5).

A texture's statistics at layer ``l`` are the Gram matrix ``G^l`` of its feature maps (which
channels fire together, averaged over positions: stationary by construction). A new image of any
size is optimized so that its Gram matrices match the source's at several layers:

    x* = argmin_x  sum_l w_l * mse(G^l(x), G^l(texture))        (:func:`~.losses.style_loss`)

Shallow layers fix colours and fine grain, deeper ones larger structures. The start (noise) and
end Gram losses come back with the pictures; ``batch`` > 1 gives several independent samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import BadArgument
from ...model.device import device_of
from ...types import NormalizeFn, ProgressFn
from .common import Optimizer, ParamKind, fit, make_param, measure, one_image, size_of
from .losses import FeatureExtractor, default_style_layers, gram_targets, style_loss


@dataclass(frozen=True)
class Texture:
    """Synthesized textures (B, 3, H, W) in [0, 1] with their Gram losses."""

    images: Tensor
    layers: tuple[str, ...]
    start_loss: Tensor
    """(B,) Gram loss of the starting noise."""
    end_loss: Tensor
    """(B,) Gram loss of each synthesized texture."""
    history: Tensor
    seconds: float

    @property
    def reduction(self) -> Tensor:
        """(B,) fraction of the start loss removed: 1 - end / start."""
        return 1 - self.end_loss / self.start_loss


def synthesize_texture(model: nn.Module, texture: Tensor, *, layers: Sequence[str] | None = None,
                       weights: Mapping[str, float] | None = None,
                       size: int | tuple[int, int] | None = None, batch: int = 1, steps: int = 100,
                       lr: float | None = None, param: ParamKind = "fourier",
                       optimizer: Optimizer = "lbfgs", seed: int = 0, normalize: NormalizeFn | None = None,
                       progress: ProgressFn | None = None) -> Texture:
    """New images with the Gram statistics of ``texture`` ((3, H, W) in [0, 1]).

    ``layers`` default to :func:`~.losses.default_style_layers`' style layers; ``size`` defaults
    to the texture's own; ``weights`` per layer default to 1. L-BFGS (default, as Gatys et al.)
    removes ~98% of the Gram loss in 20 steps on Lite0; Adam needs a few hundred.
    """
    if batch < 1:
        raise BadArgument(f"batch={batch}: give at least 1")
    device = device_of(model)
    source = one_image(texture, "texture image", device)
    names = list(layers) if layers is not None else list(default_style_layers(model).style)
    extract = FeatureExtractor(model, names, normalize=normalize)
    with torch.no_grad():
        targets = gram_targets(extract(source), names)

    def loss(images: Tensor) -> Tensor:
        return style_loss(extract(images), targets, weights)

    p = make_param(param, batch, size_of(size, source), "noise", seed, device)
    start = measure(model, loss, p())
    result = fit(model, p, loss, steps=steps, lr=lr, optimizer=optimizer, progress=progress)
    end = measure(model, loss, result.images)
    return Texture(result.images, tuple(names), start, end, result.history, result.seconds)
