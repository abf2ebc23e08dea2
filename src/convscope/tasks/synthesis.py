"""Pictures made from a network's features: ``inversion``, ``texture`` and ``style`` as tasks.

Each takes image sources, prepares them (resized, on the model's device), runs the method of
:mod:`convscope.methods.synthesis` and returns a :class:`Synthesis`: the picture to save (the
result alone, or with ``compare`` the inputs beside it), the method's own result, and a
JSON-ready summary with a one-line headline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..data import load_image
from ..errors import BadArgument, check_positive
from ..methods.synthesis import invert, synthesize_texture, transfer_style
from ..methods.synthesis.inversion import Inversion
from ..methods.synthesis.losses import default_style_layers
from ..methods.synthesis.style import Stylized
from ..methods.synthesis.texture import Texture
from ..model import Model, resolve_layer
from ..render import image_grid, png_bytes
from ..render.notebook import figure_html
from ..types import ProgressFn
from .inputs import ImageSource


@dataclass
class Synthesis:
    """A made picture, the method's result, and what to say about it."""

    picture: Tensor | Image.Image
    """What to save: (3, H, W) in [0, 1], or a captioned grid."""
    result: Any
    """The method's own dataclass (:class:`~convscope.methods.synthesis.Inversion`, ...)."""
    summary: dict[str, Any]
    headline: str
    extra: dict[str, Tensor] = field(default_factory=dict)
    """Other pictures by name (the adversarial perturbation, amplified)."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self.picture)

    def _repr_html_(self) -> str:
        return figure_html(self.picture, self.headline)


def sized(model: Model, image: Tensor, size: int | None) -> Tensor:
    """(1, 3, S, S) in [0, 1]: ``size`` (default the model's input size), fitted as the model's
    own preprocessing fits an image (its centre crop, letterbox or stretch): the lab's image is
    the one the explainer and ``predict`` show the model, not a squashed copy of it."""
    if size is not None and size < 8:
        raise BadArgument(f"size {size}: use at least 8 pixels")
    spec = replace(model.spec, input_size=(size, size)) if size else model.spec
    rgb = image.float().expand(3, -1, -1) if image.shape[0] == 1 else image.float()
    return spec.fit(rgb)[None].clamp(0, 1).to(model.device)


def shorter_side(image: Tensor, size: int) -> Tensor:
    """Resize so the shorter side is ``size`` (keeps the aspect ratio), (1, 3, h, w)."""
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    new = (max(8, round(h * scale)), max(8, round(w * scale)))
    return F.interpolate(image[None].float(), size=new, mode="bilinear", antialias=True,
                         align_corners=False).clamp(0, 1)


def layer_list(model: Model, text: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]`` (None stays None: the method's default layers), each name
    checked against ``model`` first, so a typo is refused before the optimization starts;
    ``"auto"`` becomes the layer it chooses."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise BadArgument("give at least one layer name")
    return [resolve_layer(model, name) for name in names]


def check_style_layers(model: Model, *given: Sequence[str] | str | None) -> None:
    """Refuse up front (not after loading the images) when a layer is left to the default and
    ``model`` has no default style/content layers (only EfficientNet-Lite0 and VGG have them)."""
    if any(layers is None for layers in given):
        default_style_layers(model)


def _image(source: ImageSource) -> Tensor:
    return source if isinstance(source, Tensor) and source.ndim == 3 else load_image(source)


def inversion(model: Model, image: ImageSource, layers: Sequence[str], *, size: int | None = None,
              steps: int = 200, tv: float = 0.01, l2: float = 0.0, param: str = "fourier",
              optimizer: str = "lbfgs", seed: int = 0, progress: ProgressFn | None = None
              ) -> Synthesis:
    """Reconstruct the image from its features at each of ``layers``, shown beside the original."""
    check_positive("steps", steps, integer=True)
    if not layers:
        raise BadArgument("give at least one layer name")
    x = sized(model, _image(image), size)[0]
    r: Inversion = invert(model, x, list(layers), steps=steps, tv=tv, l2=l2, param=param,  # type: ignore[arg-type]
                          optimizer=optimizer, seed=seed, progress=progress)  # type: ignore[arg-type]
    captions = ["original"] + [f"{n}: distance {float(d):.3f}" for n, d in zip(r.layers, r.end_distance)]
    picture = image_grid(torch.cat([x[None].cpu(), r.images.cpu()]), captions=captions,
                         ncols=len(layers) + 1, title=f"{model.name}: inversion from each layer")
    summary = {"layers": list(r.layers),
               "start_distance": [round(float(d), 5) for d in r.start_distance],
               "end_distance": [round(float(d), 5) for d in r.end_distance],
               "steps": steps, "seconds": round(r.seconds, 3)}
    line = ", ".join(f"{n} {float(a):.3f}->{float(b):.3f}"
                     for n, a, b in zip(r.layers, r.start_distance, r.end_distance))
    return Synthesis(picture, r, summary, f"feature distance {line}")


def texture(model: Model, image: ImageSource, *, layers: Sequence[str] | None = None,
            source_size: int = 224, size: int = 224, steps: int = 100, param: str = "fourier",
            optimizer: str = "lbfgs", seed: int = 0, compare: bool = False,
            progress: ProgressFn | None = None) -> Synthesis:
    """A new texture with the Gram statistics of ``image`` (resized to ``source_size``)."""
    check_positive("steps", steps, integer=True)
    source = shorter_side(_image(image), source_size)[0].to(model.device)
    r: Texture = synthesize_texture(model, source, layers=layers, size=size, steps=steps,
                                    param=param, optimizer=optimizer, seed=seed,  # type: ignore[arg-type]
                                    progress=progress)
    result = r.images[0].cpu()
    picture: Tensor | Image.Image = result
    if compare:
        picture = image_grid([source.cpu(), result], captions=["source", "synthesized"], ncols=2,
                             tile_size=size)
    summary = {"layers": list(r.layers), "start_loss": float(r.start_loss[0]),
               "end_loss": float(r.end_loss[0]), "reduction": round(float(r.reduction[0]), 5),
               "size": size, "steps": steps, "seconds": round(r.seconds, 3)}
    return Synthesis(picture, r, summary,
                     f"Gram loss {summary['start_loss']:.4g} -> {summary['end_loss']:.4g}")


def style(model: Model, content: ImageSource, style_image: ImageSource, *, size: int = 224,
          content_layer: str | None = None, style_layers: Sequence[str] | None = None,
          content_weight: float = 1.0, style_weight: float = 1e4, tv: float = 0.0,
          optimizer: str = "lbfgs", start: str = "content", steps: int = 100,
          preserve_colors: bool = False, seed: int = 0, compare: bool = False,
          progress: ProgressFn | None = None) -> Synthesis:
    """``content`` painted in the style of ``style_image`` (both at shorter side ``size``)."""
    check_positive("steps", steps, integer=True)
    c = shorter_side(_image(content), size)[0].to(model.device)
    s = shorter_side(_image(style_image), size)[0].to(model.device)
    r: Stylized = transfer_style(model, c, s, content_layer=content_layer, style_layers=style_layers,
                                 content_weight=content_weight, style_weight=style_weight, tv=tv,
                                 optimizer=optimizer, start=start, steps=steps,  # type: ignore[arg-type]
                                 preserve_colors=preserve_colors, seed=seed, progress=progress)
    result = r.images[0].cpu()
    picture: Tensor | Image.Image = result
    if compare:
        picture = image_grid([c.cpu(), s.cpu(), result], captions=["content", "style", "result"],
                             ncols=3, tile_size=size)
    summary = {"content_layer": r.content_layer, "style_layers": list(r.style_layers),
               "content_loss": [float(r.content_start[0]), float(r.content_end[0])],
               "style_loss": [float(r.style_start[0]), float(r.style_end[0])],
               "optimizer": optimizer, "start": start, "steps": steps,
               "preserve_colors": preserve_colors, "seconds": round(r.seconds, 3)}
    line = (f"content loss {r.content_start.item():.4g} -> {r.content_end.item():.4g}, "
            f"style loss {r.style_start.item():.4g} -> {r.style_end.item():.4g}")
    return Synthesis(picture, r, summary, line)
