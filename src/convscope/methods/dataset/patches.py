"""The input patch behind a unit: crop an image at the receptive field around a position.

A top-k record says *where* in a layer's map a channel peaked, ``(y, x)``; what the channel
responds to is the part of the input that unit sees. The field is measured once per layer by
gradient probing (:func:`~convscope.model.receptive.field_geometry`, which sees through residual
adds and pools), then every crop is a slice: images (N, C, H, W) at the model's input size in,
one (C, h, w) tensor per image out (fields that cross the border are clipped, so sizes vary).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ...errors import BadArgument
from ...model.receptive import Box, FieldGeometry, field_geometry


def unit_boxes(model: nn.Module, layer: str, positions: Sequence[tuple[int, int]], *,
               geometry: FieldGeometry | None = None) -> list[Box]:
    """Input boxes (top, left, bottom, right) of the units at ``positions`` (y, x) of ``layer``."""
    geometry = geometry or field_geometry(model, layer)
    return [geometry.box(int(y), int(x)) for y, x in positions]


def crop_patches(model: nn.Module, layer: str, images: Tensor,
                 positions: Sequence[tuple[int, int]], *,
                 geometry: FieldGeometry | None = None) -> list[Tensor]:
    """Crop each image (N, C, H, W) at the receptive field of its unit ``positions[i]``."""
    if images.ndim != 4 or images.shape[0] != len(positions):
        raise BadArgument(f"images {tuple(images.shape)} and {len(positions)} positions: give "
                          "one (C, H, W) image per position")
    boxes = unit_boxes(model, layer, positions, geometry=geometry)
    return [img[..., box.slices[0], box.slices[1]] for img, box in zip(images, boxes)]
