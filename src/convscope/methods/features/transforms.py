"""Robustness transforms: random, differentiable changes of the image before each forward pass.

Without them, activation maximization finds high-frequency patterns that excite a unit only at
one exact alignment ("adversarial" noise). Asking the objective to hold under small random
shifts, zooms and rotations gives pictures of what the unit responds to (Mordvintsev et al. 2015,
"Inceptionism"; Olah et al. 2017, "Transformation robustness"). :func:`standard_transforms` is
Lucid's recipe: pad 12, jitter 8, scale 0.9-1.1, rotate -10..10 degrees, jitter 4.

Every transform maps a batch ``(B, 3, H, W)`` in [0, 1] to a batch (possibly of another size),
draws its randomness from the ``torch.Generator`` it is given (one independent draw per image),
and is differentiable so gradients flow back to the parameterization.

:func:`gaussian_blur` is also the "blur every k steps" regularizer (Yosinski et al. 2015), which
the optimizer applies to the parameterized image itself, not to the network's view of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import BadArgument


class Transform:
    """``transform(images, generator) -> images``: one random draw per image."""

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        raise NotImplementedError


def _choice(values: Sequence[float], n: int, generator: torch.Generator) -> Tensor:
    """``n`` values drawn uniformly from ``values`` (a CPU tensor, reproducible per generator)."""
    pool = torch.as_tensor(list(values), dtype=torch.float32)
    return pool[torch.randint(len(pool), (n,), generator=generator)]


@dataclass(frozen=True)
class Pad(Transform):
    """Pad every side by ``width`` pixels of constant ``value`` (grey) or ``mode="reflect"``."""

    width: int
    value: float = 0.5
    mode: str = "constant"

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        if self.mode == "constant":
            return F.pad(images, [self.width] * 4, mode="constant", value=self.value)
        return F.pad(images, [self.width] * 4, mode=self.mode)


@dataclass(frozen=True)
class Jitter(Transform):
    """Random crop losing ``pixels`` rows and columns: a shift of 0..pixels in each direction."""

    pixels: int

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        b, _, h, w = images.shape
        d = self.pixels
        if d <= 0:
            return images
        if d >= min(h, w):
            raise BadArgument(f"jitter of {d} pixels is too large for {h}x{w} images")
        oy, ox = torch.randint(d + 1, (2, b), generator=generator).tolist()
        return torch.stack([images[i, :, y:y + h - d, x:x + w - d] for i, (y, x) in enumerate(zip(oy, ox))])


def _affine(images: Tensor, scale: Tensor, angle: Tensor, fill: float) -> Tensor:
    """Zoom by ``scale`` and rotate by ``angle`` (radians) about the centre, per image, same size.

    Pixels that come from outside the image get ``fill``. Rotation is done in pixel units so
    non-square images are not sheared.
    """
    b, _, h, w = images.shape
    cos, sin = angle.cos() / scale, angle.sin() / scale
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill


@dataclass(frozen=True)
class RandomAffine(Transform):
    """Zoom by a factor from ``scales`` (>1 zooms in) and rotate by an angle in degrees from
    ``degrees``, drawn per image, in one resampling; size is kept, the outside is ``fill``."""

    scales: tuple[float, ...] = (1.0,)
    degrees: tuple[float, ...] = (0.0,)
    fill: float = 0.5

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        s = _choice(self.scales, images.shape[0], generator)
        a = _choice(self.degrees, images.shape[0], generator) * (math.pi / 180)
        return _affine(images, s, a, self.fill)


class RandomScale(RandomAffine):
    """Zoom each image by a factor drawn from ``scales``; size is kept."""

    def __init__(self, scales: Sequence[float], fill: float = 0.5) -> None:
        super().__init__(scales=tuple(scales), fill=fill)


class RandomRotate(RandomAffine):
    """Rotate each image by an angle in degrees drawn from ``degrees``; size is kept."""

    def __init__(self, degrees: Sequence[float], fill: float = 0.5) -> None:
        super().__init__(degrees=tuple(degrees), fill=fill)


@dataclass(frozen=True)
class Compose(Transform):
    """Apply ``transforms`` in order."""

    transforms: tuple[Transform, ...]

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        for t in self.transforms:
            images = t(images, generator)
        return images


def standard_transforms() -> Compose:
    """Lucid's ``standard_transforms``: pad 12 grey, jitter 8, scale 0.9-1.1, rotate +-10, jitter 4.

    Scale and rotation share one resampling (they commute about the centre): one bilinear
    interpolation instead of two, which is both sharper and cheaper.
    """
    return Compose((
        Pad(12),
        Jitter(8),
        RandomAffine(scales=tuple(1 + (i - 5) / 50 for i in range(11)),
                     degrees=tuple(float(a) for a in [*range(-10, 11), 0, 0, 0, 0, 0])),
        Jitter(4),
    ))


def gaussian_kernel(sigma: float, device: torch.device | None = None) -> Tensor:
    """Normalized 1-D Gaussian of radius ``ceil(3 sigma)``."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of each channel, reflect-padded so borders keep their brightness."""
    if sigma <= 0:
        return images
    b, c, h, w = images.shape
    k = gaussian_kernel(sigma, images.device).to(images.dtype)
    r = k.numel() // 2
    if r >= min(h, w):
        raise BadArgument(f"blur sigma {sigma} is too large for {h}x{w} images")
    x = images.reshape(b * c, 1, h, w)
    x = F.conv2d(F.pad(x, [r, r, 0, 0], mode="reflect"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, [0, 0, r, r], mode="reflect"), k.view(1, 1, -1, 1))
    return x.reshape(b, c, h, w)


@dataclass(frozen=True)
class Blur(Transform):
    """Deterministic Gaussian blur as a transform (the generator is not used)."""

    sigma: float

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        return gaussian_blur(images, self.sigma)
