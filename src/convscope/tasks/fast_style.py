"""Fast style transfer as tasks: the content images a network trains on, and images stylized by
a trained network (optionally resized first). Training itself is
:func:`convscope.methods.synthesis.train_fast_style`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import load_folder, load_image
from ..data.samples import SAMPLES
from ..errors import check_positive
from ..methods.synthesis.fast_style import FastStyleNet, stylize


def sample_photos() -> list[str]:
    """The samples that are photographs (not textures or binary silhouettes)."""
    return [n for n, s in SAMPLES.items() if "photo" in s.description or "portrait" in s.description]


def content_images(sources: Sequence[str]) -> list[Tensor]:
    """Folders, files, ``sample:NAME``, or ``samples`` (every sample photo) as images."""
    images: list[Tensor] = []
    for src in sources:
        if src == "samples":
            images += [load_image(f"sample:{n}") for n in sample_photos()]
        elif not src.startswith("sample:") and Path(src).is_dir():
            images += [img for _, img in load_folder(src)]
        else:
            images.append(load_image(src))
    return images


def longer_side(image: Tensor, size: int | None) -> Tensor:
    """``image`` (3, H, W) resized so its longer side is ``size`` (None: unchanged)."""
    if size is None:
        return image
    h, w = image.shape[-2:]
    scale = size / max(h, w)
    new = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image[None], size=new, mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def apply_style(net: FastStyleNet, sources: Sequence[str | Path | Tensor], *,
                size: int | None = None, batch_size: int = 4) -> list[Tensor]:
    """Each image stylized in one forward pass of ``net`` (after resizing to ``size``)."""
    if size is not None:
        check_positive("size", size, integer=True)
    images = [longer_side(src if isinstance(src, Tensor) else load_image(src), size)
              for src in sources]
    with torch.no_grad():
        styled = stylize(net, images, batch_size=batch_size)
    return list(styled)
