"""Properties of map normalization, colouring, overlays, masks, boxes and PNG output."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from convscope.errors import BadArgument
from convscope.render import (
    DEFAULT_CMAP,
    colorize,
    draw_boxes,
    mask_image,
    normalize_map,
    overlay,
    overlays,
    save_png,
    text_color,
    to_pil,
)


@pytest.fixture
def image() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 30, 45, generator=g)


def _px(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(int)


# ---------------------------------------------------------------- normalize_map


@pytest.mark.parametrize("mode", ["unsigned", "signed", "abs"])
def test_range_is_unit_interval(mode: str) -> None:
    m = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 50
    out = normalize_map(m, mode=mode)
    assert out.shape == m.shape
    assert out.min() >= 0 and out.max() <= 1
    assert torch.isfinite(out).all()


def test_unsigned_min_to_zero_percentile_to_one() -> None:
    m = torch.linspace(-3, 7, 1000).reshape(20, 50)
    out = normalize_map(m, clip_percentile=100)
    assert out.min() == 0 and out.max() == 1
    assert torch.allclose(out, (m + 3) / 10, atol=1e-6)


def test_percentile_clip_ignores_one_hot_pixel() -> None:
    m = torch.linspace(0, 1, 10000).reshape(100, 100)
    m[0, 0] = 1000.0  # one outlier
    clipped = normalize_map(m, clip_percentile=99.5)
    assert clipped[0, 0] == 1
    assert clipped[50, 50] == pytest.approx(m[50, 50].item(), abs=0.02)  # bulk keeps its scale
    unclipped = normalize_map(m, clip_percentile=100)
    assert unclipped[50, 50] < 0.001  # the outlier squashes everything else


def test_lower_percentile_saturates_more() -> None:
    m = torch.linspace(0, 1, 10000)[None]
    assert (normalize_map(m, clip_percentile=90) == 1).sum() > (
        normalize_map(m, clip_percentile=99) == 1
    ).sum()


def test_abs_ignores_sign() -> None:
    m = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(normalize_map(m, mode="abs"), normalize_map(-m, mode="abs"))
    assert normalize_map(m, mode="abs", clip_percentile=100).max() == 1


def test_signed_zero_is_half_and_symmetric() -> None:
    m = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 4.0]])
    out = normalize_map(m, mode="signed", clip_percentile=100)
    assert out[0, 2] == 0.5
    assert out[0, 4] == 1 and out[0, 0] == pytest.approx(0.25)
    flipped = normalize_map(-m, mode="signed", clip_percentile=100)
    assert torch.allclose(flipped, 1 - out)


def test_per_sample_scaling() -> None:
    m = torch.stack([torch.rand(1, 6, 6), 1000 * torch.rand(1, 6, 6)])
    out = normalize_map(m, clip_percentile=100)
    assert out[0].max() == 1 and out[1].max() == 1


@pytest.mark.parametrize("value", [0.0, 3.5, -2.0])
@pytest.mark.parametrize("mode", ["unsigned", "signed", "abs"])
def test_constant_maps_give_no_nan(mode: str, value: float) -> None:
    out = normalize_map(torch.full((1, 1, 5, 5), value), mode=mode)
    assert torch.isfinite(out).all()
    if value == 0.0:
        assert torch.all(out == (0.5 if mode == "signed" else 0.0))


def test_sparse_map_uses_maximum_when_percentile_is_floor() -> None:
    m = torch.zeros(100, 100)
    m[3, 4] = 2.0
    for mode in ("unsigned", "abs", "signed"):
        assert normalize_map(m, mode=mode)[3, 4] == 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_refused(bad: float) -> None:
    m = torch.zeros(4, 4)
    m[1, 1] = bad
    with pytest.raises(BadArgument, match="NaN"):
        normalize_map(m)


def test_bad_options_refused() -> None:
    with pytest.raises(BadArgument):
        normalize_map(torch.zeros(3, 3), mode="log")  # type: ignore[arg-type]
    with pytest.raises(BadArgument):
        normalize_map(torch.zeros(3, 3), clip_percentile=0)
    with pytest.raises(BadArgument):
        normalize_map(torch.zeros(2, 3, 3), reduce="median")  # type: ignore[arg-type]
    with pytest.raises(BadArgument):
        normalize_map(torch.zeros(5))


def test_reduce_channels() -> None:
    m = torch.zeros(2, 3, 4, 4)
    m[:, 0] = -5.0
    m[:, 1] = 1.0
    assert normalize_map(m, reduce="max").shape == (2, 1, 4, 4)
    # max takes |value| (Simonyan): the -5 channel dominates everywhere -> constant map
    mx = normalize_map(m.clone().index_fill_(3, torch.tensor([0]), 0), reduce="max")
    assert mx[:, :, :, 0].max() == 0 and mx[:, :, :, 1:].min() == 1
    # mean/sum keep the sign
    signed = normalize_map(
        m[:, :, :, :2].clone().index_fill_(3, torch.tensor([0]), 0),
        mode="signed",
        reduce="sum",
        clip_percentile=100,
    )
    assert signed[..., 0].eq(0.5).all() and signed[..., 1].eq(0).all()
    assert normalize_map(m[0], reduce="mean").shape == (1, 4, 4)
    assert normalize_map(m).shape == m.shape  # no reduce: channels kept, one scale per sample


def test_rank_preserved() -> None:
    assert normalize_map(torch.rand(7, 9)).shape == (7, 9)
    assert normalize_map(torch.rand(1, 7, 9)).shape == (1, 7, 9)


# ---------------------------------------------------------------- colorize


def test_colorize_uses_the_colormap() -> None:
    m = torch.linspace(0, 1, 12).reshape(3, 4)
    rgb = colorize(m, "viridis")
    assert isinstance(rgb, torch.Tensor) and rgb.shape == (3, 3, 4)
    expected = matplotlib.colormaps["viridis"](m.numpy())[..., :3]
    assert np.allclose(rgb.permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_signed_zero_gets_the_neutral_colour() -> None:
    zero = normalize_map(torch.zeros(1, 1, 4, 4), mode="signed")
    rgb = colorize(zero, DEFAULT_CMAP["signed"])
    assert rgb.shape == (1, 3, 4, 4)
    neutral = matplotlib.colormaps[DEFAULT_CMAP["signed"]](0.5)[:3]
    assert np.allclose(rgb[0, :, 0, 0].numpy(), neutral)
    assert rgb.min() > 0.97  # white-ish
    assert colorize(torch.full((2, 2), 0.5), "RdBu_r").min() > 0.95


def test_colorize_pil_and_errors() -> None:
    img = colorize(torch.rand(5, 6), as_pil=True)
    assert isinstance(img, Image.Image) and img.size == (6, 5) and img.mode == "RGB"
    with pytest.raises(BadArgument, match="colormap"):
        colorize(torch.rand(5, 6), "not_a_cmap")
    with pytest.raises(BadArgument, match="one channel"):
        colorize(torch.rand(3, 5, 6))


# ---------------------------------------------------------------- overlay / mask


@pytest.mark.parametrize("shape", [(7, 7), (1, 5, 9), (1, 1, 30, 45), (1, 1, 60, 20), (1, 1)])
def test_overlay_has_image_size(image: torch.Tensor, shape: tuple[int, ...]) -> None:
    out = overlay(image, torch.rand(shape))
    assert isinstance(out, Image.Image) and out.size == (45, 30) and out.mode == "RGB"


def test_overlay_reduces_per_channel_maps(image: torch.Tensor) -> None:
    assert overlay(image, torch.randn(1, 3, 30, 45), reduce="max").size == (45, 30)
    with pytest.raises(BadArgument):
        overlay(image, torch.randn(3, 30, 45))  # three channels, no reduce


@pytest.mark.parametrize("mode", ["unsigned", "signed", "abs"])
def test_alpha_zero_returns_the_image(image: torch.Tensor, mode: str) -> None:
    out = overlay(image, torch.randn(8, 8), alpha=0.0, mode=mode)
    assert np.array_equal(_px(out), _px(to_pil(image)))


def test_alpha_one_shows_only_the_colormap(image: torch.Tensor) -> None:
    heat = torch.linspace(0, 1, 30 * 45).reshape(30, 45)
    out = overlay(image, heat, alpha=1.0, cmap="gray", normalize=False)
    assert np.abs(_px(out)[..., 0] - np.round(heat.numpy() * 255)).max() <= 1


def test_signed_zero_leaves_image_untouched(image: torch.Tensor) -> None:
    heat = torch.zeros(30, 45)
    heat[:, 40:] = 1.0
    out = _px(overlay(image, heat, mode="signed", alpha=1.0))
    ref = _px(to_pil(image))
    assert np.array_equal(out[:, :30], ref[:, :30])  # zero evidence: no white wash
    assert (out[:, 42:, 0] > 240).all() and (out[:, 42:, 2] < 20).all()  # positive: red


def test_overlay_accepts_pil_and_batches(image: torch.Tensor) -> None:
    assert overlay(to_pil(image), torch.rand(4, 4)).size == (45, 30)
    outs = overlays(image[None].repeat(2, 1, 1, 1), torch.rand(2, 1, 4, 4), alpha=0.3)
    assert len(outs) == 2 and all(o.size == (45, 30) for o in outs)
    with pytest.raises(BadArgument, match="overlays"):
        overlay(image, torch.rand(2, 1, 4, 4))
    with pytest.raises(BadArgument):
        overlay(image, torch.rand(4, 4), alpha=1.5)


def test_mask_image(image: torch.Tensor) -> None:
    ref = _px(to_pil(image))
    assert np.array_equal(_px(mask_image(image, torch.ones(3, 3))), ref)
    dimmed = _px(mask_image(image, torch.zeros(30, 45), dim=0.0))
    assert dimmed.max() == 0
    mask = torch.zeros(6, 9, dtype=torch.bool)
    mask[:, :3] = True  # left third, upsampled 5x
    out = _px(mask_image(image, mask, dim=0.0))
    assert np.array_equal(out[:, :14], ref[:, :14]) and out[:, 16:].max() == 0


# ---------------------------------------------------------------- pil, png, boxes


def test_to_pil_shapes_and_rounding() -> None:
    assert to_pil(torch.zeros(3, 4, 5)).size == (5, 4)
    assert to_pil(torch.zeros(1, 3, 4, 5)).mode == "RGB"
    assert to_pil(torch.zeros(1, 4, 5)).mode == "L"
    assert to_pil(torch.zeros(4, 5)).mode == "L"
    assert _px(to_pil(torch.full((3, 1, 1), 0.5)))[0, 0, 0] == 128
    assert _px(to_pil(torch.full((3, 1, 1), 7.0)))[0, 0, 0] == 255  # clamped
    assert _px(to_pil(torch.full((3, 1, 1), 9, dtype=torch.uint8)))[0, 0, 0] == 9
    with pytest.raises(BadArgument):
        to_pil(torch.zeros(5, 4, 4))
    with pytest.raises(BadArgument):
        to_pil(torch.full((3, 2, 2), float("nan")))


def test_save_png_creates_parents(tmp_path, image: torch.Tensor) -> None:
    path = save_png(image, tmp_path / "a" / "b" / "x.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (45, 30)


def test_boxes_at_the_right_pixels() -> None:
    img = torch.zeros(3, 40, 50)
    out = _px(draw_boxes(img, [(10, 5, 30, 25)], color=(255, 0, 0), width=1))
    red = (out[..., 0] == 255) & (out[..., 1] == 0)
    assert red[10, 5:25].all() and red[29, 5:25].all()  # top and bottom-1 rows
    assert red[10:30, 5].all() and red[10:30, 24].all()  # left and right-1 columns
    assert red.sum() == 2 * 20 + 2 * 18
    assert not red[30].any() and not red[:, 25].any() and not red[15, 10]


def test_boxes_with_labels_and_tensor_input() -> None:
    img = torch.zeros(3, 60, 80)
    out = draw_boxes(img, torch.tensor([[0, 0, 20, 30], [30, 40, 59, 79]]), ["a", "cat"])
    assert out.size == (80, 60)
    with pytest.raises(BadArgument):
        draw_boxes(img, [(0, 0, 5, 5)], ["a", "b"])
    with pytest.raises(BadArgument, match="empty"):
        draw_boxes(img, [(10, 10, 5, 20)])


def test_text_color() -> None:
    assert text_color("white") == "black"
    assert text_color((0, 0, 0)) == "white"


def test_place_map_on_the_whole_image_is_a_bilinear_resize() -> None:
    from convscope.render.heatmap import place_map

    m = torch.rand(2, 7, 9)
    placed, seen = place_map(m, (21, 36), (0.0, 0.0, 21.0, 36.0))
    want = torch.nn.functional.interpolate(m[None], size=(21, 36), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(placed, want, atol=1e-5) and seen.all()


def test_overlay_with_a_crop_box_colours_only_the_seen_part() -> None:
    image = torch.full((3, 10, 30), 0.8)
    picture = overlay(image, torch.rand(1, 5, 5), box=(0, 10, 10, 20), alpha=1.0)
    pixels = torch.from_numpy(np.array(picture)).permute(2, 0, 1).float() / 255
    assert picture.size == (30, 10)
    assert torch.allclose(pixels[:, :, :10], torch.full((3, 10, 10), 0.4), atol=1 / 255)  # unseen
    assert torch.allclose(pixels[:, :, 20:], torch.full((3, 10, 10), 0.4), atol=1 / 255)
    assert not torch.allclose(pixels[:, :, 10:20], torch.full((3, 10, 10), 0.8), atol=0.05)
