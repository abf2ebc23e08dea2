"""Fooling images: pictures that mean nothing to us and everything to the network.

Nguyen, Yosinski & Clune 2015, "Deep Neural Networks are Easily Fooled" (section 3.2, gradient
ascent): start from noise (or any picture) and climb the log-probability of a chosen class until
the network is at least ``threshold`` sure. This is :func:`~convscope.methods.features.visualize`
with the objective ``log p(target)``, plain pixels (clamped to [0, 1] after each step: projected
gradient ascent, no sigmoid to saturate), no transforms and no regularizers (the point is *not*
to look natural), and a callback that stops once the **8-bit**
image (what a saved PNG holds) reaches the threshold. Confidence is reported on that 8-bit image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import BadArgument
from ...model import Model, guarded, target_indices
from ...model.device import device_of
from ...types import ProgressFn, Target
from ..features import FourierImage, ImageParam, PixelImage, Step, probability, visualize
from ..features.params import Start
from .budget import on_grid
from .common import ParamKind


@dataclass(frozen=True)
class Fooling:
    """Fooling images (B, 3, H, W) on the 8-bit grid, and what the network says about them."""

    images: Tensor
    target: Tensor
    """(B,) the class asked for."""
    confidence: Tensor
    """(B,) softmax probability of the target on the 8-bit images."""
    predicted: Tensor
    """(B,) the network's top class on the 8-bit images."""
    success: Tensor
    """(B,) confidence >= threshold (which implies predicted == target for threshold > 1/2)."""
    steps: int
    seconds: float


def _probabilities(model: nn.Module, images: Tensor) -> Tensor:
    x = model.normalize(images) if isinstance(model, Model) else images
    with guarded(model), torch.no_grad():
        return model(x).flatten(1).softmax(1)


def fool(model: nn.Module, target: Target, *, threshold: float = 0.99, steps: int = 200,
         size: int | tuple[int, int] | None = None, batch: int | None = None, start: Start = "noise",
         param: ParamKind = "pixel", lr: float = 0.05, seed: int = 0,
         progress: ProgressFn | None = None) -> Fooling:
    """Images the model classifies as ``target`` with probability >= ``threshold`` (when reached).

    ``target``: a class index or label, or one per image (then ``batch`` is their number).
    ``start``: ``"noise"`` (default), ``"zeros"`` (grey) or images to start from. ``size``
    defaults to the model's input size; small images (< 96 px) take Lite0 many more steps.
    """
    if not 0 < threshold < 1:
        raise BadArgument(f"threshold={threshold}: give a probability between 0 and 1")
    if callable(target) or target == "top1":
        raise BadArgument("fool needs a class (index or label), or one per image")
    objective = probability(target, log=True)
    n = batch or objective.batch or 1
    if size is None:
        size = model.input_size if isinstance(model, Model) else 224
    generator, device = torch.Generator().manual_seed(seed), device_of(model)
    image: ImageParam
    if param == "pixel":
        image = PixelImage(n, size, squash="clamp", start=start, std=0.05, generator=generator, device=device)
    elif param == "fourier":
        image = FourierImage(n, size, start=start, generator=generator, device=device)
    else:
        raise BadArgument(f"param={param!r}: use 'pixel' or 'fourier'")
    done = [0]

    def stop(info: Step) -> bool:
        done[0] = info.step
        if bool((info.losses.neg().exp() < threshold).any()):
            return False
        grid = on_grid(info.images)
        probs = _probabilities(model, grid)
        idx = target_indices(probs, target, getattr(model, "labels", None))
        assert idx is not None
        return bool((probs.gather(1, idx[:, None]) >= threshold).all())

    result = visualize(model, objective, param=image, transforms="none", steps=steps, lr=lr, seed=seed,
                       callback=stop, progress=progress)
    images = on_grid(result.images)
    probs = _probabilities(model, images)
    idx = target_indices(probs, target, getattr(model, "labels", None))
    assert idx is not None
    conf = probs.gather(1, idx[:, None]).squeeze(1)
    return Fooling(images, idx, conf, probs.argmax(1), conf >= threshold, done[0], result.seconds)
