"""Thumbnail tiles: thumbnail i of a tile sits at row i // side, column i % side; PNG round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from convscope.errors import BadArgument
from convscope.render import png_bytes
from convscope.render.tiles import thumbnail_tile


def test_tile_layout_and_png_round_trip() -> None:
    rng = np.random.default_rng(0)
    thumbs = rng.integers(0, 256, (7, 5, 5, 3), dtype=np.uint8)
    tile = thumbnail_tile(thumbs, 3)
    assert tile.size == (15, 15)  # 7 thumbnails in rows of 3: three rows, the last one short
    pixels = np.asarray(tile)
    for i in range(7):
        r, c = divmod(i, 3)
        assert np.array_equal(pixels[r * 5:(r + 1) * 5, c * 5:(c + 1) * 5], thumbs[i])
    assert not pixels[10:, 5:].any()  # the unused cells are black
    with Image.open(io.BytesIO(png_bytes(tile))) as back:
        assert back.format == "PNG" and np.array_equal(np.asarray(back.convert("RGB")), pixels)
    with pytest.raises(BadArgument, match="do not fit a tile of 2 x 2"):
        thumbnail_tile(thumbs, 2)
    with pytest.raises(BadArgument, match="uint8"):
        thumbnail_tile(thumbs.astype(np.float32), 3)
