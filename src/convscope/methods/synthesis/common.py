"""Shared plumbing of the optimization-based syntheses (inversion, texture, style).

Every one of them is "make an image whose features match targets": a parameterization from
:mod:`convscope.methods.features.params`, a per-image loss built from :mod:`.losses`, and the one
optimizer loop :func:`~convscope.methods.features.optimize_images` run under
:func:`~convscope.model.guarded`. This module builds the parameterization, checks images and
measures the loss before and after.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ...errors import BadArgument
from ...model import guarded
from ...types import ProgressFn
from ..features import ImageParam, image_param, optimize_images
from ..features.params import Start

Optimizer = Literal["adam", "lbfgs"]
ParamKind = Literal["pixel", "fourier"]
DEFAULT_LR = {"adam": 0.05, "lbfgs": 1.0}


def one_image(image: Tensor, what: str, device: torch.device) -> Tensor:
    """A (3, H, W) or (1, 3, H, W) image in [0, 1] -> (1, 3, H, W) float on ``device``."""
    img = image[None] if image.ndim == 3 else image
    if img.ndim != 4 or img.shape[0] != 1 or img.shape[1] not in (1, 3):
        raise BadArgument(f"{what} must be one (3, H, W) image in [0, 1], got shape {tuple(image.shape)}")
    img = img.detach().float().to(device).expand(1, 3, -1, -1)
    if not torch.isfinite(img).all() or img.min() < 0 or img.max() > 1:
        raise BadArgument(f"{what} must be finite and in [0, 1] (pixels, before normalization)")
    return img


def make_param(kind: ParamKind, batch: int, size: tuple[int, int], start: Start, seed: int,
               device: torch.device) -> ImageParam:
    generator = torch.Generator().manual_seed(seed)
    return image_param(kind, batch, size, start=start, generator=generator, device=device)


def size_of(size: int | tuple[int, int] | None, default: Tensor) -> tuple[int, int]:
    if size is None:
        return int(default.shape[-2]), int(default.shape[-1])
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@dataclass(frozen=True)
class Fitted:
    images: Tensor
    """(B, 3, H, W) in [0, 1]."""
    history: Tensor
    """(steps done, B) total loss per step."""
    seconds: float


def fit(model: nn.Module, param: ImageParam, loss: Callable[[Tensor], Tensor], *, steps: int,
        lr: float | None, optimizer: Optimizer, progress: ProgressFn | None) -> Fitted:
    """Minimize the per-image ``loss(images) -> (B,)`` over ``param`` with the shared loop."""
    if optimizer not in DEFAULT_LR:
        raise BadArgument(f"optimizer={optimizer!r}: use 'adam' or 'lbfgs'")
    start = time.perf_counter()
    with guarded(model):
        result = optimize_images(param, lambda images, _step: loss(images), steps=steps,
                                 lr=lr or DEFAULT_LR[optimizer], optimizer=optimizer, progress=progress)
    return Fitted(result.images, result.losses, time.perf_counter() - start)


def measure(model: nn.Module, fn: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
    """``fn(images)`` without autograd, under :func:`guarded` (a loss or distance, (B,))."""
    with guarded(model), torch.no_grad():
        return fn(images).detach()
