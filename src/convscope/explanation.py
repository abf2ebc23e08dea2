"""``explain()``: one call from images to attribution maps, for every registered method.

This module sits above ``methods`` and ``render`` (like the CLI), so an :class:`Explanation` can
both hold tensors and draw itself. The method runs on the model's device; maps come back at input
resolution (layer maps are upsampled bilinearly) next to the raw layer-resolution map.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .api import ImageSource, as_images
from .errors import BadArgument
from .methods.evaluation.localization import Localization, localize
from .methods.registry import build_method, get_method
from .model import Model, guarded, select, target_indices
from .model.structured import ModelOutput, prepare
from .render import overlay, save_png
from .types import Target


@dataclass
class Explanation:
    """Attribution maps for a batch, with what is needed to read and draw them."""

    method: str
    values: Tensor | tuple[Tensor, ...]
    """(B, C, H, W) at input resolution; C is 1, or the input channels for per-pixel methods.
    For model inputs that are not one image batch: the attributions of each input (a tuple for
    several inputs), shaped as the method returns them."""
    raw: Tensor | tuple[Tensor, ...]
    """The method's own output (layer resolution for CAM-family methods)."""
    images: Tensor | None
    """(B, 3, H, W) in [0, 1]: the images as the model saw them (resized); ``None`` for
    inputs that are not images (nothing to draw on)."""
    targets: Tensor | None
    """(B,) class index explained per sample; ``None`` for a callable target."""
    target_labels: list[str] | None
    scores: Tensor
    """(B,) the target's score (logit) on each input."""
    layer: str | None
    seconds: float
    signed: bool
    options: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return _first(self.values).shape[0]

    def _pictures(self) -> tuple[Tensor, Tensor]:
        if self.images is None or not isinstance(self.values, Tensor):
            raise BadArgument(f"this {self.method} explanation is of model inputs, not images: there is "
                              "no picture to draw; read .values (one tensor per input)")
        return self.images, self.values

    def overlay(self, index: int | None = None, **options: Any) -> Image.Image | list[Image.Image]:
        """The map(s) over the image(s): one PIL image for ``index``, else a list."""
        images, values = self._pictures()
        mode = "signed" if self.signed else "unsigned"
        defaults: dict[str, Any] = {"mode": mode, "reduce": "sum" if self.signed else "max"}
        defaults.update(options)
        if index is not None:
            return overlay(images[index], values[index], **defaults)
        return [overlay(i, v, **defaults) for i, v in zip(images, values)]

    def localize(self, threshold: float = 0.2) -> Localization:
        """Weakly supervised localization: mask and (top, left, bottom, right) box per sample.

        The map (channels summed) is thresholded at ``threshold`` times its maximum and the
        largest connected component kept (Zhou et al. 2016 use 20%).
        """
        _, values = self._pictures()
        maps = values.sum(1, keepdim=True) if values.shape[1] > 1 else values
        return localize(maps, threshold=threshold)

    def save(self, path: str | Path, **options: Any) -> list[Path]:
        """Write each overlay as PNG: ``path`` for one sample, ``stem_<i>.png`` for a batch."""
        path = Path(path)
        pictures = self.overlay(**options)
        assert isinstance(pictures, list)
        if len(pictures) == 1:
            return [save_png(pictures[0], path)]
        return [save_png(p, path.with_name(f"{path.stem}_{i}{path.suffix or '.png'}"))
                for i, p in enumerate(pictures)]

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no maps)."""
        return {
            "method": self.method,
            "layer": self.layer,
            "seconds": round(self.seconds, 4),
            "shape": _shapes(self.values),
            "raw_shape": _shapes(self.raw),
            "targets": self.targets.tolist() if self.targets is not None else None,
            "target_labels": self.target_labels,
            "scores": [round(float(s), 4) for s in self.scores],
            "options": {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
                        for k, v in self.options.items()},
        }


def _first(values: Tensor | tuple[Tensor, ...]) -> Tensor:
    return values if isinstance(values, Tensor) else values[0]


def _shapes(values: Tensor | tuple[Tensor, ...]) -> list[int] | list[list[int]]:
    return list(values.shape) if isinstance(values, Tensor) else [list(v.shape) for v in values]


def _looks_like_image(x: object) -> bool:
    """One image as ``load_image`` gives it: (1 or 3, H, W) with values in [0, 1]."""
    return (isinstance(x, Tensor) and x.ndim == 3 and x.shape[0] in (1, 3) and x.is_floating_point()
            and bool(((x >= 0) & (x <= 1)).all()))


def model_inputs(model: Model, images: ImageSource | Sequence[ImageSource] | Tensor | tuple[Tensor, ...],
                 ) -> Tensor | tuple[Tensor, ...]:
    """What the model runs on: a 4-D tensor is model input already (``model.preprocess``
    output); so are 2-D and 3-D tensors (tables (B, F), signals (B, C, L)) and tuples of
    tensors (several inputs), except a [0, 1] image tensor (3, H, W) or a list of them, which is
    loaded as images like paths and ``sample:`` names, and preprocessed."""
    if isinstance(images, tuple) and images and all(isinstance(i, Tensor) for i in images):
        return tuple(i.to(model.device) for i in images)
    if isinstance(images, Tensor) and images.ndim in (2, 3, 4) and not _looks_like_image(images):
        return images.to(model.device)
    return model.preprocess(as_images(images))


def _one_image_many_targets(x: Tensor, target: Target) -> tuple[Tensor, Target]:
    many = (isinstance(target, Sequence) and not isinstance(target, str)) or (
        isinstance(target, Tensor) and target.ndim == 1)
    if x.shape[0] == 1 and many and len(target) > 1:  # type: ignore[arg-type]
        return x.expand(len(target), *x.shape[1:]), target  # type: ignore[arg-type]
    return x, target


def explain(
    model: Model,
    images: ImageSource | Sequence[ImageSource] | Tensor | tuple[Tensor, ...],
    method: str = "gradcam",
    target: Target = "top1",
    layer: str = "auto",
    *,
    additional_forward_args: Any = None,
    forward_kwargs: dict[str, Any] | None = None,
    model_output: ModelOutput = None,
    **options: Any,
) -> Explanation:
    """Explain the model's score for ``target`` on each image with a registered ``method``.

    ``images``: paths, ``sample:NAME``, image tensors, or a (B, C, H, W) model-input batch. One
    image with a list of targets explains each target. Options are the method's keyword options
    (``steps=32`` for integrated gradients, ...); an unknown option raises ``BadArgument``.
    Models that take other inputs get them as model input: a (B, F) or (B, C, L) tensor or a
    tuple of tensors, with ``additional_forward_args`` / ``forward_kwargs`` passed to the forward
    and ``model_output`` picking the scores from a tuple or dict output (see
    :mod:`convscope.model.structured`); the explanation then holds one map per input.
    """
    info = get_method(method)
    call_options = {"additional_forward_args": additional_forward_args,
                    "forward_kwargs": forward_kwargs, "model_output": model_output}
    x = model_inputs(model, images)
    if isinstance(x, Tensor):
        x, target = _one_image_many_targets(x, target)
    attributor = build_method(method, model, layer, **options)
    attributor.check_inputs(x)
    with guarded(model), torch.no_grad():
        call = prepare(model, x, target, method=method, **call_options)
        logits = call.model(call.inputs)
    idx = target_indices(logits, call.target, model.labels)
    scores = select(logits, call.target if idx is None else idx, model.labels)
    start = time.perf_counter()
    raw = attributor(x, idx if idx is not None else target, **call_options)
    if _first(raw).device.type == "cuda":
        torch.cuda.synchronize(_first(raw).device)
    seconds = time.perf_counter() - start
    values = raw
    is_image = isinstance(x, Tensor) and x.ndim == 4
    drawable = is_image and x.shape[1] == model.channels  # pixels the preprocessing describes
    if is_image and tuple(raw.shape[-2:]) != tuple(x.shape[-2:]):
        values = F.interpolate(raw, size=x.shape[-2:], mode="bilinear", align_corners=False)
    def detach(v: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
        return v.detach() if isinstance(v, Tensor) else tuple(t.detach() for t in v)

    return Explanation(
        method=method,
        values=detach(values),
        raw=detach(raw),
        images=model.denormalize(x).clamp(0, 1).detach() if drawable else None,
        targets=idx.cpu() if idx is not None else None,
        target_labels=[model.label(int(i)) for i in idx] if idx is not None else None,
        scores=scores.detach().cpu(),
        layer=getattr(attributor, "layer", None),
        seconds=seconds,
        signed=bool(getattr(attributor, "signed", info.signed)),
        options=options,
    )
