"""Thumbnail tiles for the web map: many small thumbnails in one PNG, in index order.

A tile holds ``side x side`` thumbnails row by row (the last tile of an atlas may be shorter),
so a browser finds image ``i`` of a tile at column ``i % side``, row ``i // side`` with no index
file. Tiles replace the one big sprite sheet that caps other tools at 8192 x 8192 px.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from convscope.errors import BadArgument


def thumbnail_tile(thumbnails: np.ndarray, side: int) -> Image.Image:
    """(k, t, t, 3) uint8 thumbnails, k <= side², as one RGB picture ``side * t`` wide."""
    if thumbnails.ndim != 4 or thumbnails.shape[-1] != 3 or thumbnails.dtype != np.uint8:
        raise BadArgument(f"thumbnails must be (k, t, t, 3) uint8, got {thumbnails.shape} {thumbnails.dtype}")
    k, t = thumbnails.shape[0], thumbnails.shape[1]
    if not 0 < k <= side * side:
        raise BadArgument(f"{k} thumbnails do not fit a tile of {side} x {side}")
    rows = -(-k // side)
    sheet = np.zeros((rows * side, t, t, 3), dtype=np.uint8)
    sheet[:k] = thumbnails
    grid = sheet.reshape(rows, side, t, t, 3).transpose(0, 2, 1, 3, 4).reshape(rows * t, side * t, 3)
    return Image.fromarray(grid)
