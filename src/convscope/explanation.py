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
from .errors import ConvscopeError
from .methods.attribution.base import method_failed
from .methods.evaluation.localization import Localization, localize
from .methods.registry import build_method, get_method
from .model import Model, guarded, select, target_indices
from .render import overlay, save_png
from .types import Target


@dataclass
class Explanation:
    """Attribution maps for a batch, with what is needed to read and draw them."""

    method: str
    values: Tensor
    """(B, C, H, W) at input resolution; C is 1, or the input channels for per-pixel methods."""
    raw: Tensor
    """The method's own output (layer resolution for CAM-family methods)."""
    images: Tensor
    """(B, 3, H, W) in [0, 1]: the images as the model saw them (resized)."""
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
        return self.values.shape[0]

    def overlay(self, index: int | None = None, **options: Any) -> Image.Image | list[Image.Image]:
        """The map(s) over the image(s): one PIL image for ``index``, else a list."""
        mode = "signed" if self.signed else "unsigned"
        defaults: dict[str, Any] = {"mode": mode, "reduce": "sum" if self.signed else "max"}
        defaults.update(options)
        if index is not None:
            return overlay(self.images[index], self.values[index], **defaults)
        return [overlay(i, v, **defaults) for i, v in zip(self.images, self.values)]

    def localize(self, threshold: float = 0.2) -> Localization:
        """Weakly supervised localization: mask and (top, left, bottom, right) box per sample.

        The map (channels summed) is thresholded at ``threshold`` times its maximum and the
        largest connected component kept (Zhou et al. 2016 use 20%).
        """
        maps = self.values.sum(1, keepdim=True) if self.values.shape[1] > 1 else self.values
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
            "shape": list(self.values.shape),
            "raw_shape": list(self.raw.shape),
            "targets": self.targets.tolist() if self.targets is not None else None,
            "target_labels": self.target_labels,
            "scores": [round(float(s), 4) for s in self.scores],
            "options": {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
                        for k, v in self.options.items()},
        }


def model_inputs(model: Model, images: ImageSource | Sequence[ImageSource] | Tensor) -> Tensor:
    """A 4-D tensor is taken as model input already (``model.preprocess`` output); anything
    else is loaded as images and preprocessed."""
    if isinstance(images, Tensor) and images.ndim == 4:
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
    images: ImageSource | Sequence[ImageSource] | Tensor,
    method: str = "gradcam",
    target: Target = "top1",
    layer: str = "auto",
    **options: Any,
) -> Explanation:
    """Explain the model's score for ``target`` on each image with a registered ``method``.

    ``images``: paths, ``sample:NAME``, image tensors, or a (B, C, H, W) model-input batch. One
    image with a list of targets explains each target. Options are the method's keyword options
    (``steps=32`` for integrated gradients, ...); an unknown option raises ``BadArgument``.
    """
    info = get_method(method)
    x, target = _one_image_many_targets(model_inputs(model, images), target)
    try:
        attributor = build_method(method, model, layer, **options)
        with guarded(model), torch.no_grad():
            logits = model(x)
    except ConvscopeError:
        raise
    except Exception as err:  # the model's own code failed: one line naming model and input
        raise method_failed(method, model, err, layer, x) from err
    idx = target_indices(logits, target, model.labels)
    scores = select(logits, target if idx is None else idx, model.labels)
    start = time.perf_counter()
    raw = attributor(x, idx if idx is not None else target)
    if raw.device.type == "cuda":
        torch.cuda.synchronize(raw.device)
    seconds = time.perf_counter() - start
    values = raw
    if tuple(raw.shape[-2:]) != tuple(x.shape[-2:]):
        values = F.interpolate(raw, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return Explanation(
        method=method,
        values=values.detach(),
        raw=raw.detach(),
        images=model.denormalize(x).clamp(0, 1).detach(),
        targets=idx.cpu() if idx is not None else None,
        target_labels=[model.label(int(i)) for i in idx] if idx is not None else None,
        scores=scores.detach().cpu(),
        layer=getattr(attributor, "layer", None),
        seconds=seconds,
        signed=bool(getattr(attributor, "signed", info.signed)),
        options=options,
    )
