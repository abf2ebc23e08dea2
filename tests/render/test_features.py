"""Filter grids, feature-map grids and mask panels: crisp enlargement, frames, scales, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import ImageFont

from convscope.errors import BadArgument
from convscope.methods.features import feature_maps
from convscope.model import Model
from convscope.render.features import FRAME, feature_map_grid, feature_map_tiles, filter_grid, mask_panel
from convscope.render.grid import _wrap


def test_filter_tiles_are_enlarged_crisply_and_framed() -> None:
    tiles = torch.zeros(2, 3, 3, 3)
    tiles[0, :, 1, 1] = 1.0  # a white centre weight
    img = np.asarray(filter_grid(tiles, tile_px=30, ncols=2))
    # each tile: 3 * 10 px + a 1-px frame on both sides, padded by 3 px
    assert img.shape[1] == 2 * 32 + 3 * 3
    tile = img[3:35, 3:35]
    assert (tile[0] == FRAME).all() and (tile[:, 0] == FRAME).all()
    assert (tile[11:21, 11:21] == 255).all() and (tile[1:11, 1:11] == 0).all()  # 10x10 cells


def test_channel_strips_one_caption_per_filter() -> None:
    tiles = torch.rand(4 * 5, 1, 3, 3)  # 4 filters of 5 input channels
    img = filter_grid(tiles, [f"#{i}" for i in range(4)], per_filter=5, ncols=1)
    assert img.width > 5 * 3 * 8  # five enlarged channel tiles side by side
    vector = filter_grid(torch.rand(3 * 96, 1, 1, 1), per_filter=96, ncols=1)
    assert vector.width <= 768 + 2 + 2 * 3  # a 1x1 filter is one vector strip, capped
    with pytest.raises(BadArgument, match="captions"):
        filter_grid(tiles, ["a"], per_filter=5)
    with pytest.raises(BadArgument, match="do not split"):
        filter_grid(tiles[:7], per_filter=5)
    with pytest.raises(BadArgument, match="kh, kw"):
        filter_grid(torch.rand(2, 2, 3, 3))


def test_feature_map_scales() -> None:
    maps = torch.stack([torch.linspace(0, 1, 49).reshape(7, 7), 0.01 * torch.ones(7, 7)])
    maps[1, 0, 0] = 0.0
    own = np.asarray(feature_map_grid(maps, tile_px=14, ncols=2)).astype(int)
    shared = np.asarray(feature_map_grid(maps, tile_px=14, ncols=2, scale="shared")).astype(int)
    # the weak map's bright cells are as bright as the strong map's with its own scale, and
    # stay near the dark end of the colormap on the shared scale
    bright_own, bright_shared = own[3 + 13, 3 + 14 + 3 + 13], shared[3 + 13, 3 + 14 + 3 + 13]
    assert abs(bright_own - own[3 + 13, 3 + 13]).sum() < 10
    assert abs(bright_shared - shared[3, 3 + 14 + 3]).sum() < 30
    with pytest.raises(BadArgument, match="NaN"):
        feature_map_grid(torch.full((1, 2, 2), float("nan")))
    with pytest.raises(BadArgument, match="scale="):
        feature_map_grid(maps, scale="global")  # type: ignore[arg-type]


def test_reference_image_comes_first_at_map_size() -> None:
    maps = torch.rand(3, 7, 7)
    img = feature_map_grid(maps, ["a", "b", "c"], tile_px=28, reference=torch.ones(3, 50, 50))
    arr = np.asarray(img)
    assert (arr[3:3 + 28, 3:3 + 28] == 255).all()  # white reference image, 28x28, top-left
    assert img.width == 2 * max(28, 66) + 3 * 3  # 4 tiles in 2 columns; cells widen for captions


def test_mask_panel_three_panels() -> None:
    image = torch.rand(3, 32, 32)
    act = torch.rand(1, 4, 4)
    img = mask_panel(image, act, act >= 0.5)
    assert img.width >= 3 * 32 and img.height > 32
    with pytest.raises(BadArgument, match="three captions"):
        mask_panel(image, act, act >= 0.5, captions=("a", "b"))


def test_feature_map_captions_keep_mean_and_max_apart_on_one_line(tiny: Model) -> None:
    """The grid font's space is narrow: "mean 5.41 max 22.4" read as "5.41max"; a dot separates."""
    fm = feature_maps(tiny, torch.rand(1, 3, 16, 16), "relu1", sort="max", top=3)
    font = ImageFont.load_default(size=11)
    for caption in fm.captions(0):
        _, stats = caption.split("\n")
        assert re.fullmatch(r"mean -?\d+\.\d\d · max -?\d+\.\d", stats), stats
        assert _wrap(stats, font, 112, 2) == [stats]  # fits a default 112-px tile on one line


def test_feature_map_tiles_one_crisp_picture_per_map_on_its_own_scale() -> None:
    import matplotlib

    maps = torch.stack([torch.arange(12.0).reshape(3, 4), 100 + 5 * torch.arange(12.0).reshape(3, 4)])
    tiles = feature_map_tiles(maps, tile_px=40, cmap="viridis")
    assert len(tiles) == 2 and tiles[0].size == (40, 30)  # k = min(40 // 3, 40 // 4) = 10
    lo, hi = (np.round(255 * np.array(matplotlib.colormaps["viridis"](v)[:3])) for v in (0.0, 1.0))
    for tile in tiles:  # each map from its own min (first cell) to its max (last cell)
        px = np.asarray(tile).astype(float)
        assert np.abs(px[0, 0] - lo).max() <= 1 and np.abs(px[-1, -1] - hi).max() <= 1
        assert (px[:10, :10] == px[0, 0]).all()  # one cell = a 10x10 block
