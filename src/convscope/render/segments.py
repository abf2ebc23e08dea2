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

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (250, 250, 110)]
"""One colour per class index (matplotlib's tab10, the last made brighter), cycled past ten."""


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
