"""Baselines: what a hidden, removed or "absent" input looks like, in one vocabulary for every method.

Integrated gradients integrates from a baseline, DeepLIFT explains the difference from a
reference, occlusion and RISE fill hidden pixels with one, LIME shows it for an off superpixel
and the deletion/insertion curves start from one (their "substrate"). The same word means the
same tensor in all of them:

``"black"``
    pixel value 0 in every channel, normalized like an image (``model.normalize(0)``).
``"mean"``
    the dataset mean colour, i.e. model-input zero (Zeiler & Fergus's grey square, Captum's
    default, what ``zeros_like`` on normalized tensors is).
``"blur"``
    a Gaussian blur of the input with ``sigma`` pixels (Sturmfels et al. 2020; the RISE code's
    insertion substrate). ``"blurred"`` is accepted as the same word.
``"uniform"``
    uniform pixel noise in [0, 1], drawn with ``seed``, normalized like an image.
``"segment_mean"`` (LIME only)
    each superpixel's own mean colour (what the ``lime`` package does with ``hide_color=None``).
a tensor
    model-input values broadcastable to the inputs, used as given.

``"zeros"`` used to mean black pixels in occlusion and RISE but the mean colour in DeepLIFT and
LIME; it is refused with a message naming the two words that replace it.

Shapes: any batched input, (B, C, H, W), (B, C, L) or (B, F). "black" and "uniform" are
normalized with the model's per-channel mean and std where they fit the channel count; inputs
that are not the model's images (tables, signals, other channel counts) have no pixel
normalization, so there pixel values are model-input values (black is 0). "blur" needs a spatial
axis.
"""

from __future__ import annotations

import math
from typing import Literal, cast, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import BadArgument, check_positive

BaselineName = Literal["black", "mean", "blur", "uniform"]
SegmentBaseline = Literal["black", "mean", "blur", "uniform", "segment_mean"]
ALIASES = {"blurred": "blur"}
"""Old words that mean exactly what the new word does."""
RETIRED = {
    "zeros": "meant black pixels in occlusion/RISE but the mean colour in DeepLIFT/LIME; "
             "say 'black' (pixel value 0) or 'mean' (the dataset mean colour, model-input zero)",
}


def check_baseline(name: str, value: object, words: tuple[str, ...] = get_args(BaselineName)) -> object:
    """Validate a baseline option at construction: a finite tensor or one of ``words``.

    Returns the value with an alias replaced by its word, so methods store the canonical name.
    ``name`` is the option as the user spells it (``baseline``, ``reference``, ``substrate``).
    """
    if isinstance(value, Tensor):
        if not torch.isfinite(value).all():
            raise BadArgument(f"{name} tensor contains NaN or infinite values")
        return value
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, Tensor) for v in value):
        if not all(torch.isfinite(v).all() for v in value):
            raise BadArgument(f"{name} tensors contain NaN or infinite values")
        return tuple(value)  # one per input tensor of a call with several inputs
    if isinstance(value, str) and value in RETIRED:
        raise BadArgument(f"{name}={value!r} {RETIRED[value]}")
    word = ALIASES.get(value, value) if isinstance(value, str) else value
    if word not in words:
        raise BadArgument(f"{name}={value!r}: choose from {', '.join(map(repr, words))} or a tensor")
    return word


def make_baseline(model: object, inputs: Tensor, baseline: str | Tensor, *, sigma: float = 10.0,
                  seed: int = 0, name: str = "baseline") -> Tensor:
    """The baseline for each input, the inputs' shape, in model-input space (see the module notes).

    ``model`` supplies the normalization (its ``spec.mean``/``spec.std``; a plain network has none,
    so pixels are its inputs). "segment_mean" is LIME's own and is built there.
    """
    if isinstance(baseline, Tensor):
        return broadcast_to_inputs(baseline, inputs, name)
    word = cast(str, check_baseline(name, baseline))
    if word == "mean":
        return torch.zeros_like(inputs)
    if word == "blur":
        check_positive("sigma", sigma)
        return gaussian_blur(inputs, sigma, name=f"{name}='blur'")
    if word == "uniform":
        gen = torch.Generator().manual_seed(seed)
        pixels = torch.rand(inputs.shape, generator=gen, dtype=inputs.dtype).to(inputs.device)
    else:
        pixels = torch.zeros_like(inputs)
    return _normalize(model, pixels, f"{name}={word!r}")


def broadcast_to_inputs(given: Tensor, inputs: Tensor, name: str) -> Tensor:
    """A user's tensor expanded to the inputs' shape, or one line saying it does not fit."""
    try:
        shape = torch.broadcast_shapes(given.shape, inputs.shape)
    except RuntimeError:
        shape = None
    if shape != inputs.shape:
        raise BadArgument(f"{name} of shape {tuple(given.shape)} does not broadcast to the "
                          f"inputs {tuple(inputs.shape)}")
    return given.to(inputs).expand_as(inputs)


def _normalize(model: object, pixels: Tensor, what: str) -> Tensor:
    """Pixels -> model input with the model's per-channel mean and std, for any batched shape."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return pixels
    mean = torch.tensor(spec.mean, dtype=pixels.dtype, device=pixels.device)
    std = torch.tensor(spec.std, dtype=pixels.dtype, device=pixels.device)
    channels = pixels.shape[1] if pixels.ndim > 1 else 1
    if mean.numel() not in (1, channels):  # not the model's images (a table, a signal, extra
        return pixels                        # bands): no pixel normalization applies to them
    view = (1, -1) + (1,) * (pixels.ndim - 2)
    return (pixels - mean.view(view)) / std.view(view)


def gaussian_blur(images: Tensor, sigma: float, *, name: str = "blur") -> Tensor:
    """Separable Gaussian blur over the spatial axes of (B, C, H, W) or (B, C, L), edges
    replicated, kernel radius ceil(3 sigma); each frame of (B, C, T, H, W) clips on its own
    (time is not blurred: a blurred clip keeps its motion's timing).

    Blurring commutes with the per-channel affine normalization, so blurring model inputs equals
    normalizing the blurred pixels.
    """
    if images.ndim == 5:
        b, c, t, h, w = images.shape
        frames = gaussian_blur(images.transpose(1, 2).reshape(b * t, c, h, w), sigma, name=name)
        return frames.view(b, t, c, h, w).transpose(1, 2)
    if images.ndim not in (3, 4):
        raise BadArgument(f"{name} needs inputs with a spatial axis, (B, C, H, W), (B, C, L) or "
                          f"(B, C, T, H, W) clips; got shape {tuple(images.shape)}")
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    if images.ndim == 3:
        out = F.pad(images, (radius, radius), mode="replicate")
        return F.conv1d(out, kernel.view(1, 1, -1).expand(c, 1, -1), groups=c)
    out = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
