"""Image parameterizations: the tensors the optimizer changes, and how they become pictures.

An :class:`ImageParam` holds leaf tensors (``parameters()``) and maps them to a batch of images
``(B, 3, H, W)`` in [0, 1] (``__call__``). Which space the optimizer walks in matters as much as
the objective (Olah et al. 2017, "Feature Visualization", section "Preconditioning"):

* :class:`PixelImage` -- one value per pixel, squashed by a sigmoid (or clamped to [0, 1] after
  each step: projected gradient ascent, as Simonyan et al. 2014 and Yosinski et al. 2015). Plain
  gradient steps in pixel space are dominated by high frequencies.
* :class:`FourierImage` -- the image's 2-D real FFT, each frequency scaled by ``1 / f^decay``
  (Lucid's ``fft_image``), then a fixed colour transform that maps decorrelated channels to RGB
  (Lucid's ``color_correlation_svd_sqrt``: the square root of ImageNet's colour covariance, from
  its SVD), then a sigmoid. Gradient steps are thus whitened: low frequencies and natural colours
  are as easy to change as high frequencies, which gives smooth, natural-looking pictures.

``assign(images)`` sets the leaves so that the parameterization reproduces given images (the
inverse map); it starts an optimization from a photo and applies "blur every k steps".
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import BadArgument

Start = Literal["noise", "zeros"] | Tensor
"""``"noise"``: small seeded noise around grey; ``"zeros"``: plain grey; a tensor: those images."""

# Lucid's colour decorrelation: sqrt of ImageNet's RGB covariance, columns scaled so the largest
# has unit norm (lucid/optvis/param/color.py).
COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
_EPS = 1e-4  # keeps logit() of a saturated pixel finite when inverting the sigmoid


def color_matrix(device: torch.device | None = None) -> Tensor:
    """The (3, 3) matrix ``M`` with ``rgb = M @ decorrelated`` (column norms at most 1)."""
    m = torch.tensor(COLOR_CORRELATION_SVD_SQRT, device=device)
    return m / m.norm(dim=0).max()


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 2 or w < 2:
        raise BadArgument(f"image size {size}: use at least 2x2 pixels")
    return h, w


def _start_images(start: Tensor, batch: int, size: tuple[int, int], device: torch.device) -> Tensor:
    """Given images as a (batch, 3, H, W) tensor in [0, 1] at ``size``."""
    img = start.detach().float().to(device)
    img = img[None] if img.ndim == 3 else img
    if img.ndim != 4 or img.shape[1] not in (1, 3) or img.shape[0] not in (1, batch):
        raise BadArgument(f"start image of shape {tuple(start.shape)}: give (3,H,W) or ({batch},3,H,W)")
    if not torch.isfinite(img).all():
        raise BadArgument("start image has NaN or infinite values")
    img = img.expand(batch, 3, -1, -1)
    if tuple(img.shape[-2:]) != size:
        img = F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)
    return img.clamp(0, 1)


class ImageParam:
    """B images computed from leaf tensors the optimizer updates (see the module docstring)."""

    batch: int
    size: tuple[int, int]

    def parameters(self) -> list[Tensor]:
        raise NotImplementedError

    def __call__(self) -> Tensor:
        """The images, (B, 3, H, W) in [0, 1], differentiable w.r.t. ``parameters()``."""
        raise NotImplementedError

    @torch.no_grad()
    def assign(self, images: Tensor) -> None:
        """Set the leaves so that ``self()`` gives ``images`` (up to sigmoid saturation)."""
        raise NotImplementedError

    def project(self) -> None:
        """Called after every optimizer step (constraints such as clamping)."""

    def _init(self, start: Start, generator: torch.Generator | None, std: float) -> None:
        leaf = self.parameters()[0]
        if isinstance(start, Tensor):
            self.assign(_start_images(start, self.batch, self.size, leaf.device))
        elif start == "noise":
            noise = torch.randn(leaf.shape, generator=generator, dtype=leaf.dtype)
            with torch.no_grad():
                leaf.add_(std * noise.to(leaf.device))
        elif start != "zeros":
            raise BadArgument(f"start={start!r}: use 'noise', 'zeros' or an image tensor")


class PixelImage(ImageParam):
    """One parameter per pixel and colour; ``squash="sigmoid"`` or ``"clamp"`` keeps [0, 1]."""

    def __init__(self, batch: int, size: int | tuple[int, int], *, squash: str = "sigmoid",
                 start: Start = "noise", std: float = 0.01, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> None:
        if squash not in ("sigmoid", "clamp"):
            raise BadArgument(f"squash={squash!r}: use 'sigmoid' or 'clamp'")
        self.batch, self.size, self.squash = batch, _size(size), squash
        # sigmoid: logits, 0 is grey; clamp: the centred image itself, 0 is grey
        self.pixels = torch.zeros(batch, 3, *self.size, device=device)
        self._init(start, generator, std)
        self.pixels.requires_grad_(True)

    def parameters(self) -> list[Tensor]:
        return [self.pixels]

    def __call__(self) -> Tensor:
        return torch.sigmoid(self.pixels) if self.squash == "sigmoid" else self.pixels + 0.5

    @torch.no_grad()
    def assign(self, images: Tensor) -> None:
        if self.squash == "sigmoid":
            self.pixels.copy_(torch.logit(images.clamp(_EPS, 1 - _EPS)))
        else:
            self.pixels.copy_(images.clamp(0, 1) - 0.5)

    @torch.no_grad()
    def project(self) -> None:
        if self.squash == "clamp":
            self.pixels.clamp_(-0.5, 0.5)


def fft_scale(size: tuple[int, int], decay: float, device: torch.device | None = None) -> Tensor:
    """(H, W//2+1) factor ``1 / max(f, 1/max(H, W))^decay`` for each frequency of an rfft2."""
    h, w = size
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    freqs = (fy * fy + fx * fx).sqrt()
    return 1.0 / freqs.clamp(min=1.0 / max(h, w)).pow(decay)


class FourierImage(ImageParam):
    """Scaled spectrum + colour decorrelation + sigmoid (Olah et al. 2017; Lucid ``fft_image``).

    ``decay`` is the spectrum's power law (1: ``1/f``, natural images' amplitude spectrum);
    larger values favour smoother images. The division by 4 is Lucid's, keeping the initial
    image in the sigmoid's linear range.
    """

    def __init__(self, batch: int, size: int | tuple[int, int], *, decay: float = 1.0,
                 decorrelate: bool = True, start: Start = "noise", std: float = 0.01,
                 generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> None:
        self.batch, self.size, self.decorrelate = batch, _size(size), decorrelate
        self.scale = fft_scale(self.size, decay, torch.device(device) if device else None)
        # real and imaginary parts of each colour's spectrum: (B, 3, H, W//2+1, 2)
        self.spectrum = torch.zeros(batch, 3, *self.scale.shape, 2, device=device)
        self.color = color_matrix(self.spectrum.device)
        self._init(start, generator, std)
        self.spectrum.requires_grad_(True)

    def parameters(self) -> list[Tensor]:
        return [self.spectrum]

    def __call__(self) -> Tensor:
        spec = torch.view_as_complex(self.spectrum) * self.scale
        decorrelated = torch.fft.irfft2(spec, s=self.size, norm="ortho") / 4.0
        if self.decorrelate:
            decorrelated = torch.einsum("ij,bjhw->bihw", self.color, decorrelated)
        return torch.sigmoid(decorrelated)

    @torch.no_grad()
    def assign(self, images: Tensor) -> None:
        t = torch.logit(images.clamp(_EPS, 1 - _EPS))
        if self.decorrelate:
            t = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.color), t)
        spec = torch.fft.rfft2(t * 4.0, norm="ortho") / self.scale
        self.spectrum.copy_(torch.view_as_real(spec))


ParamKind = Literal["pixel", "fourier"]


def image_param(kind: ParamKind, batch: int, size: int | tuple[int, int], **options: object) -> ImageParam:
    """Build a parameterization by name (``options`` go to its constructor)."""
    if kind == "pixel":
        return PixelImage(batch, size, **options)  # type: ignore[arg-type]
    if kind == "fourier":
        return FourierImage(batch, size, **options)  # type: ignore[arg-type]
    raise BadArgument(f"param={kind!r}: use 'pixel' or 'fourier'")
