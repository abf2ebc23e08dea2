"""Geometry and content of captioned image grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.errors import BadArgument
from convscope.render import image_grid, to_pil


def _solid(w: int, h: int, color: tuple[int, int, int] = (255, 0, 0)) -> Image.Image:
    return Image.new("RGB", (w, h), color)


def _px(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(int)


@pytest.mark.parametrize(("n", "ncols", "pad"), [(5, 3, 4), (6, 2, 0), (1, None, 7), (4, 10, 2)])
def test_size_arithmetic(n: int, ncols: int | None, pad: int) -> None:
    grid = image_grid([_solid(10, 8)] * n, ncols=ncols, pad=pad)
    cols = min(ncols or int(np.ceil(np.sqrt(n))), n)
    rows = int(np.ceil(n / cols))
    assert grid.size == (cols * 10 + (cols + 1) * pad, rows * 8 + (rows + 1) * pad)
    assert grid.mode == "RGB"


def test_default_ncols_is_square_ish() -> None:
    assert image_grid([_solid(10, 10)] * 5, pad=0).size == (30, 20)  # 3 columns, 2 rows


def test_tiles_placed_at_pad_offsets_on_background() -> None:
    grid = _px(image_grid([_solid(10, 8), _solid(10, 8, (0, 0, 255))], ncols=2, pad=3))
    assert (grid[0, 0] == 255).all()  # white background
    assert list(grid[3, 3]) == [255, 0, 0] and list(grid[10, 12]) == [255, 0, 0]
    assert list(grid[3, 16]) == [0, 0, 255]  # second tile starts at pad + 10 + pad
    assert (grid[3, 13:16] == 255).all()  # gap between tiles


def test_smaller_tiles_are_centred_in_cells() -> None:
    grid = _px(image_grid([_solid(10, 10), _solid(4, 4, (0, 255, 0))], ncols=2, pad=0))
    assert grid.shape == (10, 20, 3)
    assert list(grid[5, 15]) == [0, 255, 0] and (grid[0, 10] == 255).all()


def test_captions_add_one_band_per_row() -> None:
    tiles = [_solid(80, 60)] * 4
    plain = image_grid(tiles, ncols=2)
    short = image_grid(tiles, ncols=2, captions=["a", "b", "c", "d"])
    assert short.width == plain.width
    extra = short.height - plain.height
    assert extra > 0 and extra % 2 == 0  # same caption band under each of the 2 rows
    assert extra // 2 >= 12  # at least one line of a 12 px font


def test_long_captions_wrap_then_truncate() -> None:
    tiles = [_solid(80, 60)] * 2
    one = image_grid(tiles, captions=["short", "short"])
    two = image_grid(tiles, captions=["a rather long caption here", "x"], caption_lines=2)
    huge = image_grid(tiles, captions=["word " * 200, "x"], caption_lines=2)
    three = image_grid(tiles, captions=["word " * 200, "x"], caption_lines=3)
    assert one.height < two.height == huge.height < three.height


def test_caption_text_is_drawn_inside_its_cell() -> None:
    grid = image_grid([_solid(80, 40, (255, 255, 255))], captions=["Hello"], pad=0)
    px = _px(grid)
    assert px[:40].min() == 255  # tile untouched
    assert px[40:].min() < 100  # dark ink below it
    on_black = _px(image_grid([_solid(80, 40)], captions=["Hi"], background="black"))
    assert on_black[48:].max() > 155  # light ink on a dark background


def test_small_tiles_widen_for_captions() -> None:
    grid = image_grid([_solid(5, 5)] * 3, captions=["f0", "f1", "f2"], ncols=3, pad=0)
    assert grid.width >= 3 * 6 * 12


def test_title_adds_height_only() -> None:
    tiles = [_solid(40, 40)] * 2
    assert image_grid(tiles, title="Hello").size[0] == image_grid(tiles).size[0]
    assert image_grid(tiles, title="Hello").size[1] > image_grid(tiles).size[1]
    top = _px(image_grid([_solid(200, 20, (255, 255, 255))], title="Title", pad=0))
    assert top[:15].min() < 100  # the title is drawn above the tiles


def test_tile_size_fits_keeping_aspect() -> None:
    grid = image_grid([_solid(100, 50), _solid(20, 40)], tile_size=32, ncols=2, pad=0)
    assert grid.size == (64, 32)  # cells 32x32: (32x16) and (16x32)
    wide = image_grid([_solid(300, 200)], tile_size=150, pad=0)
    assert wide.size == (150, 100)  # the cell shrinks to the fitted tile, no empty band
    assert image_grid([_solid(10, 10)], tile_size=(40, 20), pad=0).size == (20, 20)


def test_upscale_is_nearest_neighbour() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.rand(3, 3, 3, generator=g)
    grid = _px(image_grid([w], upscale=10, pad=0))
    assert grid.shape == (30, 30, 3)
    ref = _px(to_pil(w))
    for i in range(3):
        for j in range(3):
            block = grid[10 * i : 10 * i + 10, 10 * j : 10 * j + 10]
            assert (block == ref[i, j]).all()  # crisp squares, no blur


def test_upscale_auto() -> None:
    assert image_grid([torch.rand(3, 3, 3)], upscale="auto", tile_size=64, pad=0).size == (63, 63)
    assert image_grid([torch.rand(3, 7, 7)], upscale="auto", pad=0).size == (63, 63)
    with pytest.raises(BadArgument):
        image_grid([torch.rand(3, 3, 3)], upscale=0)


def test_grayscale_and_transparent_tiles() -> None:
    tiles = [Image.new("L", (4, 4), 100), torch.full((1, 4, 4), 0.5), torch.zeros(4, 4)]
    px = _px(image_grid(tiles, ncols=3, pad=0))
    assert px.shape == (4, 12, 3)
    assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert (_px(image_grid([clear], pad=0, background="blue")) == [0, 0, 255]).all()


def test_batched_tensor_and_rescale() -> None:
    batch = torch.rand(6, 3, 5, 5)
    assert image_grid(batch, ncols=3, pad=1).size == (3 * 5 + 4, 2 * 5 + 3)
    filters = torch.linspace(-5, 5, 9).reshape(1, 1, 3, 3)
    px = _px(image_grid(filters, rescale=True, pad=0))
    assert px.min() == 0 and px.max() == 255


def test_bad_arguments() -> None:
    with pytest.raises(BadArgument):
        image_grid([])
    with pytest.raises(BadArgument, match="captions"):
        image_grid([_solid(4, 4)] * 2, captions=["one"])
    with pytest.raises(BadArgument):
        image_grid([_solid(4, 4)], ncols=0)
    with pytest.raises(BadArgument):
        image_grid([_solid(4, 4)], tile_size=0)
