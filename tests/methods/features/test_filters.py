"""Filter tiles: shapes, [0, 1] scaling that is an exact affine image of the weights, views,
paging and sorting arithmetic, errors, and a model left untouched."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from convscope.errors import BadArgument, BadLayer
from convscope.methods.features.filters import FilterTiles, conv_layers, filter_tiles
from convscope.model import Model, get_layer


def _weight(model: nn.Module, layer: str) -> torch.Tensor:
    return get_layer(model, layer).weight.detach()


def test_lite0_first_layer_is_32_rgb_3x3_tiles(lite0: Model) -> None:
    ft = filter_tiles(lite0)
    assert ft.layer == "_conv_stem" and ft.view == "rgb"
    assert ft.tiles.shape == (32, 3, 3, 3) and ft.per_filter == 1
    assert (ft.pages, ft.total_filters, ft.page) == (1, 32, 0)
    assert torch.equal(ft.filters, torch.arange(32)) and (ft.channels == -1).all()
    w = _weight(lite0, "_conv_stem")
    torch.testing.assert_close(ft.norms, w.flatten(1).norm(dim=1))
    assert ft.tiles.min() >= 0 and ft.tiles.max() <= 1


def test_minmax_is_the_per_filter_affine_image_of_the_weights(lite0: Model) -> None:
    ft = filter_tiles(lite0, "_conv_stem")
    w = _weight(lite0, "_conv_stem").flatten(1)
    live = ft.norms > 1e-3  # lite0's stem holds 4 pruned filters (|w| ~ 1e-7)
    assert 20 < live.sum() < 32
    tiles = ft.tiles.flatten(1)
    assert torch.allclose(tiles[live].amin(1), torch.zeros(int(live.sum())))
    assert torch.allclose(tiles[live].amax(1), torch.ones(int(live.sum())))
    lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    torch.testing.assert_close(tiles[live], ((w - lo) / (hi - lo))[live])
    # numerical dust is not stretched into a pattern: dead filters are flat mid-gray
    assert torch.equal(tiles[~live], torch.full_like(tiles[~live], 0.5))


def test_symmetric_keeps_zero_at_mid_gray_and_the_sign(lite0: Model) -> None:
    ft = filter_tiles(lite0, "_conv_stem", normalize="symmetric")
    w = _weight(lite0, "_conv_stem").flatten(1)
    live = ft.norms > 1e-3
    centred = ft.tiles.flatten(1)[live] - 0.5
    assert torch.equal(torch.sign(centred), torch.sign(w[live]))
    torch.testing.assert_close(centred.abs().amax(1), torch.full((int(live.sum()),), 0.5))
    torch.testing.assert_close(centred, 0.5 * w[live] / w[live].abs().amax(1, keepdim=True))


def test_layer_scope_shares_one_scale(lite0: Model) -> None:
    ft = filter_tiles(lite0, "_conv_stem", scope="layer")
    w = _weight(lite0, "_conv_stem")
    torch.testing.assert_close(ft.tiles, (w - w.min()) / (w.max() - w.min()))
    assert ft.tiles.min() == 0 and ft.tiles.max() == 1


def test_depthwise_conv_gives_one_gray_tile_per_channel(lite0: Model) -> None:
    layer = "_blocks.1._depthwise_conv"
    conv = get_layer(lite0, layer)
    assert conv.groups == conv.in_channels == 96 and conv.weight.shape == (96, 1, 3, 3)
    ft = filter_tiles(lite0, layer, max_filters=None)
    assert ft.view == "depthwise" and ft.tiles.shape == (96, 1, 3, 3) and ft.per_filter == 1
    flat, live = ft.tiles.flatten(1), ft.norms > 1e-3  # channel 79 is pruned (|w| ~ 4e-9)
    n = int(live.sum())
    assert n == 95 and torch.equal(flat[~live], torch.full_like(flat[~live], 0.5))
    assert torch.allclose(flat[live].amin(1), torch.zeros(n))
    assert torch.allclose(flat[live].amax(1), torch.ones(n))
    with pytest.raises(BadArgument, match="one input channel"):
        filter_tiles(lite0, "_conv_stem", view="depthwise")


def test_paging_and_cap_arithmetic(lite0: Model) -> None:
    layer = "_blocks.1._depthwise_conv"  # 96 filters
    first = filter_tiles(lite0, layer, max_filters=40)
    last = filter_tiles(lite0, layer, max_filters=40, page=2)
    assert first.pages == last.pages == math.ceil(96 / 40) == 3
    assert first.tiles.shape[0] == 40 and last.tiles.shape[0] == 96 - 80
    pages = [filter_tiles(lite0, layer, max_filters=40, page=p).filters for p in range(3)]
    assert torch.equal(torch.cat(pages), torch.arange(96))  # disjoint and complete
    with pytest.raises(BadArgument, match="page=3"):
        filter_tiles(lite0, layer, max_filters=40, page=3)
    with pytest.raises(BadArgument, match="max_filters"):
        filter_tiles(lite0, layer, max_filters=0)


def test_sort_by_norm_orders_all_pages(lite0: Model) -> None:
    layer = "_blocks.1._depthwise_conv"
    pages = [filter_tiles(lite0, layer, sort="norm", max_filters=32, page=p) for p in range(3)]
    norms = torch.cat([p.norms for p in pages])
    assert (norms[:-1] >= norms[1:]).all()
    expected = _weight(lite0, layer).flatten(1).norm(dim=1).sort(descending=True).values
    torch.testing.assert_close(norms, expected)
    assert sorted(torch.cat([p.filters for p in pages]).tolist()) == list(range(96))


def test_channels_view_rows_and_channel_cap(tiny: Model) -> None:
    ft = filter_tiles(tiny, "conv2", max_filters=3, page=2)  # 8 filters of 6 channels
    assert ft.view == "channels" and ft.pages == 3 and ft.per_filter == 6
    assert ft.tiles.shape == (2 * 6, 1, 3, 3)
    assert ft.filters.tolist() == [6] * 6 + [7] * 6
    assert ft.channels.tolist() == list(range(6)) * 2
    assert ft.filter_captions == [f"#6 |w|={ft.norms[0]:.2f}", f"#7 |w|={ft.norms[6]:.2f}"]
    # one scale per filter: all six channel tiles of a filter together span [0, 1]
    per_filter = ft.tiles.reshape(2, -1)
    assert torch.allclose(per_filter.amin(1), torch.zeros(2))
    assert torch.allclose(per_filter.amax(1), torch.ones(2))
    capped = filter_tiles(tiny, "conv2", max_channels=2)
    assert capped.tiles.shape == (8 * 2, 1, 3, 3) and capped.per_filter == 2
    torch.testing.assert_close(capped.tiles.reshape(8, 2, 3, 3),
                               filter_tiles(tiny, "conv2").tiles.reshape(8, 6, 3, 3)[:, :2])


def test_mean_view_is_the_channel_mean(tiny: Model) -> None:
    ft = filter_tiles(tiny, "conv2", view="mean")
    m = _weight(tiny, "conv2").mean(1).flatten(1)
    lo, hi = m.amin(1, keepdim=True), m.amax(1, keepdim=True)
    assert ft.tiles.shape == (8, 1, 3, 3)
    torch.testing.assert_close(ft.tiles.flatten(1), (m - lo) / (hi - lo))


def test_default_layer_and_errors(tiny: Model) -> None:
    assert conv_layers(tiny) == ["conv1", "conv2"]
    ft = filter_tiles(tiny)
    assert isinstance(ft, FilterTiles) and ft.layer == "conv1" and ft.view == "rgb"
    with pytest.raises(BadLayer, match="ReLU, not a Conv2d"):
        filter_tiles(tiny, "relu1")
    with pytest.raises(BadLayer, match="did you mean"):
        filter_tiles(tiny, "conv3")
    with pytest.raises(BadArgument, match="3 input channels"):
        filter_tiles(tiny, "conv2", view="rgb")
    with pytest.raises(BadLayer, match="no Conv2d"):
        filter_tiles(nn.Sequential(nn.Linear(2, 2)))


def test_model_untouched(tiny: Model) -> None:
    tiny.train()
    tiny.net.conv1.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    flags = [(p.requires_grad, m.training) for m in tiny.modules() for p in m.parameters(False)]
    for view in ("rgb", "channels", "mean"):
        ft = filter_tiles(tiny, "conv1", view=view, sort="norm", normalize="symmetric")
        ft.tiles.mul_(0)  # the tiles are copies: scribbling on them cannot reach the weights
    filter_tiles(tiny, "conv2", scope="layer")
    after = tiny.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert flags == [(p.requires_grad, m.training) for m in tiny.modules() for p in m.parameters(False)]
    assert all(p.grad is None for p in tiny.parameters())


def test_a_grayscale_first_layer_is_shown_in_the_gray_view() -> None:
    from convscope.model import load_model

    ft = filter_tiles(load_model("digits_cnn"))
    assert ft.view == "gray" and ft.per_filter == 1 and ft.tiles.shape[1:] == (1, 3, 3)
