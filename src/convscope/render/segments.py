"""A class map as a picture: each class its own colour, blended over the image it segments.

For dense models (a segmenter's argmax, a dataset's truth mask); the background class is left
uncoloured so the image shows through.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import BadArgument
from .heatmap import ImageLike, to_pil

PALETTE = [(0, 114, 189), (255, 128, 0), (60, 180, 75), (230, 25, 75), (145, 30, 180),
           (170, 110, 40), (240, 50, 230), (255, 225, 25), (70, 240, 240), (250, 190, 190)]
"""One colour per class index, ten that stay apart over a dark image (after Kelly's and
Trubetskoy's lists of distinct colours), cycled past ten."""


def class_colors(classes: Tensor, background: int | None = None) -> tuple[Tensor, Tensor]:
    """((3, H, W) colours in [0, 1], (H, W) bool: coloured) for an (H, W) integer class map."""
    if classes.ndim != 2 or classes.dtype.is_floating_point:
        raise BadArgument(f"class map of shape {tuple(classes.shape)} and dtype {classes.dtype}: "
                          "give one (H, W) integer map")
    table = torch.tensor(PALETTE, dtype=torch.float32) / 255
    rgb = table[classes.long() % len(PALETTE)].permute(2, 0, 1)
    shown = classes != background if background is not None else torch.ones_like(classes, dtype=torch.bool)
    return rgb, shown


def segmentation_overlay(image: ImageLike, classes: Tensor, *, background: int | None = None,
                         alpha: float = 0.65) -> Image.Image:
    """``image`` with each pixel of ``classes`` (same size) tinted by its class colour."""
    base = to_pil(image).convert("RGB")
    if tuple(classes.shape) != (base.height, base.width):
        raise BadArgument(f"class map {tuple(classes.shape)} does not match the "
                          f"{base.height}x{base.width} image")
    rgb, shown = class_colors(classes, background)
    pixels = torch.from_numpy(np.asarray(base).copy()).permute(2, 0, 1).float() / 255
    blend = torch.where(shown, (1 - alpha) * pixels + alpha * rgb, pixels)
    return to_pil(blend)
