"""Neural style transfer (Gatys, Ecker & Bethge 2016, "Image Style Transfer Using CNNs", Eq. 1-7).

An image is optimized to keep the *content* of one picture (its feature maps at one deeper
layer) and take the *style* of another (Gram matrices at several layers):

    L(x) = content_weight * mse(F^c(x), F^c(content))                          (Eq. 1)
         + style_weight * sum_l w_l * mse(G^l(x), G^l(style))                  (Eq. 4-5)
         + tv * TV(x)

Gatys et al. optimize with L-BFGS from noise or from the content image; both are offered, and
Adam. ``preserve_colors`` is their luminance-only transfer (Gatys, Bethge, Hertzmann &
Shechtman 2016, "Preserving Color in Neural Artistic Style Transfer", section 3): content and
style are reduced to luminance (Y of YIQ), the style's luminance is matched to the content's
mean and spread, the transfer runs on these grey images, and the result's luminance is put
back together with the content's chroma (I, Q).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ...errors import BadArgument
from ...model.device import device_of
from ...types import NormalizeFn, ProgressFn
from ..features.optimize import tv_penalty
from .common import Optimizer, ParamKind, fit, make_param, measure, one_image
from .losses import (
    FeatureExtractor,
    content_loss,
    default_style_layers,
    gram_targets,
    style_loss,
)

RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.595716, -0.274453, -0.321263), (0.211456, -0.522591, 0.311135))
DEFAULT_STYLE_WEIGHT = 1e4


def rgb_to_yiq(images: Tensor) -> Tensor:
    """(B, 3, H, W) RGB -> YIQ (NTSC): Y is luminance, I and Q chroma."""
    m = torch.tensor(RGB_TO_YIQ, device=images.device, dtype=images.dtype)
    return torch.einsum("ij,bjhw->bihw", m, images)


def yiq_to_rgb(images: Tensor) -> Tensor:
    m = torch.linalg.inv(torch.tensor(RGB_TO_YIQ, dtype=torch.float64)).to(images.device, images.dtype)
    return torch.einsum("ij,bjhw->bihw", m, images)


def luminance(images: Tensor) -> Tensor:
    """The Y channel as a grey RGB image (B, 3, H, W)."""
    return rgb_to_yiq(images)[:, :1].expand(-1, 3, -1, -1).contiguous()


@dataclass(frozen=True)
class Stylized:
    """The stylized image(s) (1, 3, H, W) in [0, 1] and the two losses before and after."""

    images: Tensor
    content_layer: str
    style_layers: tuple[str, ...]
    content_start: Tensor
    content_end: Tensor
    style_start: Tensor
    style_end: Tensor
    """(1,) unweighted content loss and style loss of the start image and of the result."""
    history: Tensor
    """(steps, 1) total weighted loss per step."""
    seconds: float


def transfer_style(model: nn.Module, content: Tensor, style: Tensor, *, content_layer: str | None = None,
                   style_layers: Sequence[str] | None = None,
                   style_layer_weights: Mapping[str, float] | None = None, content_weight: float = 1.0,
                   style_weight: float = DEFAULT_STYLE_WEIGHT, tv: float = 0.0,
                   optimizer: Optimizer = "lbfgs", start: Literal["content", "noise"] = "content",
                   steps: int = 100, lr: float | None = None, param: ParamKind = "pixel",
                   preserve_colors: bool = False, seed: int = 0, normalize: NormalizeFn | None = None,
                   progress: ProgressFn | None = None) -> Stylized:
    """Paint ``content`` ((3, H, W) in [0, 1]; the result has its size) in the style of ``style``.

    Layers default to :func:`~.losses.default_style_layers`. The style image is used at its own
    size (Gram matrices do not depend on it); resize it first to choose the scale of its strokes.
    """
    if start not in ("content", "noise"):
        raise BadArgument(f"start={start!r}: use 'content' or 'noise'")
    if content_weight < 0 or style_weight < 0 or tv < 0:
        raise BadArgument("content_weight, style_weight and tv must be >= 0")
    device = device_of(model)
    c_img, s_img = one_image(content, "content image", device), one_image(style, "style image", device)
    chroma = rgb_to_yiq(c_img)[:, 1:] if preserve_colors else None
    if preserve_colors:
        c_img, s_img = luminance(c_img), _match_luminance(luminance(s_img), luminance(c_img))
    defaults = default_style_layers(model) if content_layer is None or style_layers is None else None
    c_layer = content_layer or defaults.content  # type: ignore[union-attr]
    s_layers = list(style_layers) if style_layers is not None else list(defaults.style)  # type: ignore[union-attr]
    extract = FeatureExtractor(model, [c_layer, *s_layers], normalize=normalize)
    with torch.no_grad():
        c_target = extract(c_img)[c_layer].detach()
        s_targets = gram_targets(extract(s_img), s_layers)

    def parts(images: Tensor) -> tuple[Tensor, Tensor]:
        feats = extract(images)
        return content_loss(feats[c_layer], c_target), style_loss(feats, s_targets, style_layer_weights)

    def loss(images: Tensor) -> Tensor:
        c, s = parts(images)
        total = content_weight * c + style_weight * s
        return total + tv * tv_penalty(images) if tv else total

    size = (int(c_img.shape[-2]), int(c_img.shape[-1]))
    p = make_param(param, 1, size, c_img if start == "content" else "noise", seed, device)
    c0, s0 = measure(model, lambda x: torch.stack(parts(x)), p())
    result = fit(model, p, loss, steps=steps, lr=lr, optimizer=optimizer, progress=progress)
    c1, s1 = measure(model, lambda x: torch.stack(parts(x)), result.images)
    images = result.images
    if chroma is not None:
        y = rgb_to_yiq(images)[:, :1]
        images = yiq_to_rgb(torch.cat([y, chroma], 1)).clamp(0, 1)
    return Stylized(images, c_layer, tuple(s_layers), c0, c1, s0, s1, result.history, result.seconds)


def _match_luminance(style: Tensor, content: Tensor) -> Tensor:
    """Style luminance shifted and scaled to the content's mean and standard deviation."""
    mu_s, sd_s = style.mean(), style.std().clamp_min(1e-6)
    out = (style - mu_s) * (content.std() / sd_s) + content.mean()
    return out.clamp(0, 1)
