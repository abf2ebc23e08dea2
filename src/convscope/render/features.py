"""Pictures of what is inside a network: filter grids, feature-map grids, activation-mask panels.

Inputs are plain tensors (this package never imports ``convscope.methods``): filter tiles already
in [0, 1], raw activation maps, masks. Small things are enlarged by an integer nearest-neighbour
factor so a 3x3 kernel or a 7x7 map shows its cells as crisp squares, never as a blur that
suggests detail the weights do not have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from PIL import Image
from torch import Tensor

from convscope.errors import BadArgument
from convscope.render.grid import image_grid
from convscope.render.heatmap import ImageLike, colorize, mask_image, overlay, to_pil

STRIP_MAX_WIDTH = 768
"""Widest a one-filter strip (all its input channels side by side) is enlarged to, in pixels."""
FRAME = (64, 64, 64)
"""1-pixel frame around every filter tile, so a white (maximal) weight never melts into the
white page and each tile's extent is visible."""
VECTOR_CELL_MAX = 16
"""Largest cell of a 1x1-kernel strip: such a filter is a vector, not an image."""


def _framed(tile: Tensor, k: int) -> Image.Image:
    """A (C, h, w) tile in [0, 1] enlarged ``k`` times (nearest neighbour), with a dark frame."""
    pil = to_pil(tile).convert("RGB")
    pil = pil.resize((pil.width * k, pil.height * k), Image.Resampling.NEAREST)
    framed = Image.new("RGB", (pil.width + 2, pil.height + 2), FRAME)
    framed.paste(pil, (1, 1))
    return framed


def _strip(group: Tensor, tile_px: int) -> Image.Image:
    """One filter's channel tiles ``(cin, 1, kh, kw)`` side by side on white, 2 px apart; a 1x1
    kernel becomes one framed vector of ``cin`` cells."""
    cin, _, kh, kw = group.shape
    if kh == kw == 1:
        k = max(1, min(VECTOR_CELL_MAX, STRIP_MAX_WIDTH // cin))
        return _framed(group.reshape(1, 1, cin), k)
    k = max(1, min(tile_px // max(kh, kw), (STRIP_MAX_WIDTH // cin - 4) // kw))
    parts = [_framed(t, k) for t in group]
    gap = 2
    out = Image.new("RGB", (sum(p.width for p in parts) + gap * (cin - 1), parts[0].height),
                    "white")
    x = 0
    for part in parts:
        out.paste(part, (x, 0))
        x += part.width + gap
    return out


def filter_grid(
    tiles: Tensor,
    captions: Sequence[str] | None = None,
    *,
    per_filter: int = 1,
    tile_px: int = 48,
    ncols: int | None = None,
    title: str | None = None,
    font_size: int = 11,
) -> Image.Image:
    """Grid of filter tiles ``(N, C, kh, kw)`` in [0, 1] (C = 3: colour, C = 1: grayscale).

    Each tile is enlarged by the largest integer nearest-neighbour factor that fits ``tile_px``
    and framed. With ``per_filter > 1`` (one tile per input channel, filter-major), each filter's
    tiles are joined into one horizontal strip with one caption: ``captions`` then holds one
    caption per filter.
    """
    if tiles.dim() != 4 or tiles.shape[1] not in (1, 3):
        raise BadArgument(f"filter tiles of shape {tuple(tiles.shape)}; use (N, 1 or 3, kh, kw)")
    if tiles.shape[0] == 0:
        raise BadArgument("filter_grid got no tiles")
    t = tiles.detach().float().cpu().clamp(0, 1)
    if per_filter <= 1:
        kh, kw = t.shape[-2:]
        k = max(1, min(tile_px // kh, tile_px // kw))
        cols = ncols or min(len(t), max(8, math.ceil(math.sqrt(len(t)))))  # wide: fits a page
        return image_grid([_framed(x, k) for x in t], captions=captions, ncols=cols,
                          title=title, font_size=font_size, pad=3)
    if t.shape[1] != 1 or t.shape[0] % per_filter:
        raise BadArgument(f"{t.shape[0]} tiles do not split into grayscale filters of "
                          f"{per_filter} channels")
    strips = [_strip(g, tile_px) for g in t.reshape(-1, per_filter, 1, *t.shape[-2:])]
    cols = ncols or max(1, min(len(strips), STRIP_MAX_WIDTH // (strips[0].width + 3)))
    return image_grid(strips, captions=captions, ncols=cols, title=title, font_size=font_size,
                      pad=3, caption_lines=1)


def feature_map_tiles(
    maps: Tensor,
    *,
    scale: Literal["channel", "shared"] = "channel",
    cmap: str = "viridis",
    tile_px: int = 112,
) -> list[Image.Image]:
    """One colour-mapped picture per feature map ``(N, h, w)`` (or ``(N, 1, h, w)``), enlarged
    by an integer nearest-neighbour factor up to ``tile_px`` (see :func:`feature_map_grid`)."""
    m = maps.detach().float().cpu()
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.dim() != 3 or m.shape[0] == 0:
        raise BadArgument(f"feature maps of shape {tuple(maps.shape)}; use (N, h, w)")
    if not torch.isfinite(m).all():
        raise BadArgument("feature maps contain NaN or infinite values")
    if scale == "channel":
        lo, hi = m.amin((1, 2), keepdim=True), m.amax((1, 2), keepdim=True)
    elif scale == "shared":
        lo, hi = m.amin().expand(len(m), 1, 1), m.amax().expand(len(m), 1, 1)
    else:
        raise BadArgument(f"scale={scale!r}; use 'channel' or 'shared'")
    unit = torch.where(hi > lo, (m - lo) / (hi - lo).clamp_min(1e-30), torch.zeros_like(m))
    h, w = m.shape[-2:]
    k = max(1, min(tile_px // h, tile_px // w))
    return [colorize(u, cmap, as_pil=True).resize((w * k, h * k), Image.Resampling.NEAREST)
            for u in unit]


def feature_map_grid(
    maps: Tensor,
    captions: Sequence[str] | None = None,
    *,
    scale: Literal["channel", "shared"] = "channel",
    cmap: str = "viridis",
    tile_px: int = 112,
    ncols: int | None = None,
    title: str | None = None,
    font_size: int = 11,
    reference: ImageLike | None = None,
    reference_caption: str = "input",
) -> Image.Image:
    """Grid of one sample's feature maps ``(N, h, w)`` (or ``(N, 1, h, w)``), colour-mapped.

    ``scale="channel"`` stretches each map from its own min to max (shapes are readable, strength
    is not: read it from the captions); ``"shared"`` uses one range for all maps, so weak channels
    look weak. Maps are enlarged by an integer nearest-neighbour factor up to ``tile_px``.
    ``reference`` (the input image) is shown first, at the maps' display size, for comparison.
    """
    tiles: list[ImageLike] = list(feature_map_tiles(maps, scale=scale, cmap=cmap, tile_px=tile_px))
    h, w = tiles[0].height, tiles[0].width  # type: ignore[union-attr]
    labels = list(captions) if captions is not None else None
    if reference is not None:
        ref = to_pil(reference).convert("RGB").resize((w, h), Image.Resampling.LANCZOS)
        tiles.insert(0, ref)
        labels = [reference_caption, *labels] if labels is not None else None
    return image_grid(tiles, captions=labels, ncols=ncols or math.ceil(math.sqrt(len(tiles))),
                      title=title, font_size=font_size, pad=3)


def mask_panel(
    image: ImageLike,
    activation: Tensor,
    mask: Tensor,
    *,
    captions: Sequence[str] = ("image", "activation", "mask"),
    title: str | None = None,
    dim: float = 0.15,
    font_size: int = 12,
) -> Image.Image:
    """Three panels side by side: the image, the activation as a heat overlay, and the image
    shown only inside ``mask`` (darkened to ``dim`` elsewhere). ``activation`` and ``mask`` are
    one-channel maps of any resolution (resized to the image)."""
    if len(captions) != 3:
        raise BadArgument("mask_panel takes three captions: image, activation, mask")
    heat = overlay(image, activation.detach().float().cpu().reshape(activation.shape[-2:]),
                   alpha=0.55, clip_percentile=100.0)
    masked = mask_image(image, mask.detach().cpu().reshape(mask.shape[-2:]), dim=dim)
    return image_grid([image, heat, masked], captions=list(captions), ncols=3, title=title,
                      font_size=font_size, pad=4)
