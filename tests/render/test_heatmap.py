"""Properties of map normalization, colouring, overlays, masks, boxes and PNG output."""

from __future__ import annotations

from typing import Any

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
    map_levels,
    mask_image,
    normalize_map,
    overlay,
    overlay_table,
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


# ---------------------------------------------------------------- the fast overlay against the float path


def _overlay_by_matplotlib(image: torch.Tensor, heat: torch.Tensor, *, alpha: float, cmap: str, mode: str,
                           reduce: str | None = None, box: tuple[float, ...] | None = None,
                           unseen: float = 0.5, normalize: bool = True) -> np.ndarray:
    """The overlay as drawn before its lookup-table path: matplotlib's colormap called on the
    float map, the blend in float, rounded to 8 bits at the end. (H, W, 3) ints."""
    from convscope.render.heatmap import place_map

    img = image.clamp(0, 1)
    size = (img.shape[-2], img.shape[-1])
    seen = torch.ones(size, dtype=torch.bool)
    h = heat if heat.dim() == 3 else heat[None]
    if box is None:
        h = torch.nn.functional.interpolate(h[None], size=size, mode="bilinear", align_corners=False)[0]
    if normalize:
        h = normalize_map(h, mode=mode, reduce=reduce)  # type: ignore[arg-type]
    if box is not None:
        h, seen = place_map(h, size, box)
    h = h.reshape(size).clamp(0, 1)
    rgb = torch.from_numpy(matplotlib.colormaps[cmap](h.numpy())[..., :3]).float().permute(2, 0, 1)
    ramp = (2 * (2 * h - 1).abs()).clamp(max=1) if mode == "signed" else torch.ones_like(h)
    a = alpha * ramp * seen
    shade = torch.where(seen, 1.0, unseen)
    blended = img * shade * (1 - a) + rgb * a
    return (blended.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy().astype(int)


def _photos() -> list[torch.Tensor]:
    from convscope.data import list_samples
    from convscope.data.images import load_image

    photos = [load_image(f"sample:{name}") for name in list(list_samples())[:3]]
    return [*photos, torch.rand(3, 37, 53, generator=torch.Generator().manual_seed(4))]


def _maps(photo: torch.Tensor) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    g = torch.Generator().manual_seed(int(photo.shape[-1]))
    smooth = torch.nn.functional.interpolate(torch.rand(1, 1, 7, 7, generator=g), size=(56, 56),
                                             mode="bilinear", align_corners=False)[0]
    signed = torch.randn(1, 24, 24, generator=g)
    pixels = torch.randn(3, 32, 32, generator=g)
    height, width = photo.shape[-2:]
    crop = (height * 0.1, width * 0.2, height * 0.9, width * 0.7)  # a centre crop the model saw
    letterbox = (-height * 0.2, 0.0, height * 1.2, float(width))  # around the image
    return [
        (smooth, {"mode": "unsigned", "cmap": "inferno", "alpha": 0.5}),
        (smooth, {"mode": "unsigned", "cmap": "inferno", "alpha": 0.5, "box": crop}),
        (smooth, {"mode": "abs", "cmap": "viridis", "alpha": 0.35, "box": letterbox, "unseen": 0.3}),
        (signed, {"mode": "signed", "cmap": "bwr", "alpha": 0.7}),
        (signed, {"mode": "signed", "cmap": "bwr", "alpha": 0.7, "box": crop}),
        (pixels, {"mode": "signed", "cmap": "RdBu_r", "alpha": 0.7, "reduce": "sum"}),
        (pixels, {"mode": "unsigned", "cmap": "inferno", "alpha": 0.5, "reduce": "max", "box": crop}),
        (smooth.clamp(0, 1), {"mode": "unsigned", "cmap": "gray", "alpha": 1.0, "normalize": False}),
    ]


def test_overlay_equals_the_matplotlib_float_path_within_rounding() -> None:
    cases = 0
    for photo in _photos():
        for heat, options in _maps(photo):
            want = _overlay_by_matplotlib(photo, heat, **options)
            got = _px(overlay(photo, heat, **options))
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= 1, options  # 1/255 per channel at most
            assert (got != want).mean() < 0.002, options  # and only where the float sat on a .5
            cases += 1
    assert cases == 32


def test_overlay_changes_neither_its_image_nor_its_map() -> None:
    photo = _photos()[0]
    heat = torch.rand(1, 12, 12)
    kept_photo, kept_heat = photo.clone(), heat.clone()
    for mode in ("unsigned", "signed"):
        overlay(photo, heat, mode=mode)  # type: ignore[arg-type]
        overlay(photo, heat, mode=mode, normalize=False, box=(0, 0, 50, 60))  # type: ignore[arg-type]
    assert torch.equal(photo, kept_photo) and torch.equal(heat, kept_heat)


def test_colorize_is_matplotlib_exactly_at_the_table_edges() -> None:
    for cmap in ("inferno", "bwr", "viridis", "gray", "RdBu_r"):
        n = matplotlib.colormaps[cmap].N
        edges = torch.arange(n + 1, dtype=torch.float32) / n  # every index boundary, and 1.0
        values = torch.cat([edges, edges - 1e-7, torch.rand(500, generator=torch.Generator().manual_seed(3))])
        values = values.clamp(0, 1).reshape(1, -1)
        want = matplotlib.colormaps[cmap](values.numpy())[..., :3].astype(np.float32)
        assert np.array_equal(colorize(values, cmap).permute(1, 2, 0).numpy(), want), cmap


# ---------------------------------------------------------------- png_bytes


@pytest.mark.parametrize("shape", [(30, 45, 3), (30, 45), (17, 9, 4), (1, 1, 3), (64, 1), (1, 70, 3)])
def test_png_bytes_decode_to_the_same_pixels(shape: tuple[int, ...]) -> None:
    import io

    from convscope.render import png_bytes

    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    pixels[: shape[0] // 2] = 255  # a flat area too (runs of zeros after the filter)
    picture = Image.fromarray(pixels)
    blob = png_bytes(picture)
    with Image.open(io.BytesIO(blob)) as decoded:
        decoded.load()
        assert decoded.format == "PNG" and decoded.mode == picture.mode
        assert np.array_equal(np.asarray(decoded), pixels)


def test_png_bytes_of_tensors_and_other_modes_and_their_size() -> None:
    import io

    from convscope.render import png_bytes

    photo = _photos()[0]
    drawn = overlay(photo, torch.rand(1, 7, 7))
    blob = png_bytes(drawn)
    with Image.open(io.BytesIO(blob)) as decoded:
        assert np.array_equal(np.asarray(decoded), np.asarray(drawn))
    by_pil = io.BytesIO()
    drawn.save(by_pil, format="PNG", compress_level=1)
    assert len(blob) < 1.1 * len(by_pil.getvalue())  # no larger than PIL's fast setting
    with Image.open(io.BytesIO(png_bytes(photo))) as decoded:  # a tensor
        assert np.array_equal(np.asarray(decoded), np.asarray(to_pil(photo)))
    palette = drawn.convert("P")
    with Image.open(io.BytesIO(png_bytes(palette))) as decoded:
        assert decoded.mode == "RGB"
        assert np.array_equal(np.asarray(decoded), np.asarray(palette.convert("RGB")))


@pytest.mark.parametrize("mode", ["unsigned", "signed"])
def test_levels_looked_up_in_the_table_and_composited_are_the_overlay(mode: str) -> None:
    """The map's gray levels, each looked up in the overlay's table (colour and alpha) and drawn
    "over" the image (out = rgb * a + image * (1 - a), as a browser composites), give
    overlay()'s picture, up to the 8-bit rounding of level, colour and alpha."""
    torch.manual_seed(0)
    image = torch.rand(3, 20, 24)
    heat = torch.randn(1, 20, 24) if mode == "signed" else torch.rand(1, 20, 24)
    levels = np.asarray(map_levels(heat, mode=mode))
    assert levels.shape == (20, 24) and levels.dtype == np.uint8
    table = overlay_table(mode).numpy()
    assert table.shape == (256, 4) and table.dtype == np.uint8
    layer = table[levels].astype(np.float64) / 255
    rgb, a = layer[..., :3], layer[..., 3:]
    composited = rgb * a + image.permute(1, 2, 0).numpy() * (1 - a)
    drawn = np.asarray(overlay(image, heat, mode=mode)).astype(np.float64) / 255
    assert np.abs(composited - drawn).max() <= 6 / 255
    assert np.abs(composited - drawn).mean() <= 1 / 255
    if mode == "signed":  # zero evidence is transparent, strong evidence as strong as overlay's
        assert table[127:129, 3].max() <= 2 and table[[0, 255], 3].tolist() == [178, 178]
    else:
        assert (table[:, 3] == 128).all()


def test_map_levels_keep_the_map_resolution_and_check_like_overlay() -> None:
    assert map_levels(torch.rand(2, 7, 9), reduce="max").size == (9, 7)
    with pytest.raises(BadArgument, match="channels"):
        map_levels(torch.rand(2, 7, 9))
    with pytest.raises(BadArgument, match="alpha"):
        overlay_table(alpha=2)
