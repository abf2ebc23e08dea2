"""Captioned grids of images: overlays side by side, filters, activation maps, dataset patches.

One function lays out any mix of PIL images and tensors. Tiles are centred in equal cells so rows
and columns line up whatever their sizes; tiny tiles (3x3 filters, 7x7 feature maps) can be
enlarged by an integer nearest-neighbour factor so every weight stays a crisp square instead of a
blur. Geometry, so callers and tests can predict it::

    width  = ncols * cell_w + (ncols + 1) * pad
    height = title_h + nrows * (cell_h + caption_h) + (nrows + 1) * pad

``cell`` is the largest tile after resizing (so at most ``tile_size``; a 300x200 photo in a
``tile_size=300`` grid leaves no empty band), widened to fit a readable caption; ``caption_h``
is 0 without captions, ``title_h`` is 0 without a title.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from convscope.errors import BadArgument
from convscope.render.heatmap import Color, text_color, to_pil

Tile = Tensor | Image.Image
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

ELLIPSIS = "..."  # ASCII: the default font's "…" glyph is easy to miss at small sizes


def _tiles(images: Sequence[Tile] | Tensor, rescale: bool) -> list[Image.Image]:
    """PIL tiles from a list of images/tensors or one (N,C,H,W) batch; tensors must be in [0,1]
    unless ``rescale`` min-max scales each one (filter weights, raw activations)."""
    items = list(images.unbind(0)) if torch.is_tensor(images) else list(images)
    if not items:
        raise BadArgument("image_grid got no images; pass at least one")
    out = []
    for item in items:
        if torch.is_tensor(item) and rescale:
            t = item.detach().float()
            lo, hi = t.min(), t.max()
            item = (t - lo) / (hi - lo) if hi > lo else torch.zeros_like(t)
        out.append(to_pil(item))
    return out


def _as_rgb(tile: Image.Image, background: Color) -> Image.Image:
    """RGB tile; transparency is composited over the grid background, grayscale is expanded."""
    if tile.mode in ("RGBA", "LA", "P", "PA"):
        rgba = tile.convert("RGBA")
        base = Image.new("RGBA", rgba.size, background)
        return Image.alpha_composite(base, rgba).convert("RGB")
    return tile.convert("RGB")


def _resize(
    tile: Image.Image, box: tuple[int, int] | None, upscale: int | Literal["auto"] | None
) -> Image.Image:
    """Integer nearest-neighbour upscale first (crisp pixels), then fit into ``box`` if given."""
    w, h = tile.size
    if upscale == "auto":
        tw, th = box if box else (64, 64)
        k = max(1, min(tw // w, th // h))
    elif upscale is None:
        k = 1
    elif isinstance(upscale, int) and upscale >= 1:
        k = upscale
    else:
        raise BadArgument(f"upscale={upscale!r}; use a positive int, 'auto' or None")
    if k > 1:
        tile = tile.resize((w * k, h * k), Image.Resampling.NEAREST)
        w, h = tile.size
    if box is None:
        return tile
    s = min(box[0] / w, box[1] / h)
    if s < 1:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        return tile.resize(size, Image.Resampling.LANCZOS)
    if s > 1 and upscale is None:  # pixel-art tiles keep their integer factor, centred
        size = (max(1, round(w * s)), max(1, round(h * s)))
        return tile.resize(size, Image.Resampling.BILINEAR)
    return tile


def _wrap(text: str, font: Font, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; words longer than a line are split; overflow past
    ``max_lines`` is cut with an ellipsis so a caption never spills into the next row."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            trial = f"{line} {word}" if line else word
            if font.getlength(trial) <= width:
                line = trial
                continue
            if line:
                lines.append(line)
            line = ""
            for ch in word:  # hard-break a word that alone is too long
                if font.getlength(line + ch) > width and line:
                    lines.append(line)
                    line = ""
                line += ch
        lines.append(line)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and font.getlength(last + ELLIPSIS) > width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last.rstrip() + ELLIPSIS]
    return lines


def _line_height(font: Font) -> int:
    ascent, descent = font.getmetrics()  # type: ignore[union-attr]
    return int(ascent + descent) + 2


def image_grid(
    images: Sequence[Tile] | Tensor,
    *,
    captions: Sequence[str] | None = None,
    ncols: int | None = None,
    pad: int = 4,
    tile_size: int | tuple[int, int] | None = None,
    upscale: int | Literal["auto"] | None = None,
    title: str | None = None,
    background: Color = "white",
    font_size: int = 12,
    caption_lines: int = 2,
    rescale: bool = False,
) -> Image.Image:
    """Lay out images in a captioned grid and return one RGB picture.

    ``images``: PIL images and/or tensors ``(3,H,W)``, ``(1,H,W)``, ``(H,W)`` in [0,1], or a
    ``(N,C,H,W)`` batch. ``tile_size`` (``int`` or ``(w, h)``) fits each tile into that box,
    keeping its aspect ratio. ``upscale`` enlarges each tile by an integer nearest-neighbour
    factor (``"auto"``: the largest that fits ``tile_size``, or reaches 64 px without one).
    ``ncols`` defaults to a square-ish ``ceil(sqrt(N))``. Captions wrap to the cell width and
    are cut after ``caption_lines`` lines. ``rescale`` min-max scales each tensor tile first.
    """
    tiles = _tiles(images, rescale)
    n = len(tiles)
    if captions is not None and len(captions) != n:
        raise BadArgument(f"{len(captions)} captions for {n} images; give one per image")
    if ncols is not None and ncols < 1:
        raise BadArgument(f"ncols={ncols}; use a positive number of columns")
    if pad < 0 or font_size < 1 or caption_lines < 1:
        raise BadArgument("pad must be >= 0, font_size and caption_lines >= 1")
    box = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size
    if box is not None and min(box) < 1:
        raise BadArgument(f"tile_size={tile_size}; use a positive size")
    tiles = [_resize(_as_rgb(t, background), box, upscale) for t in tiles]

    ncols = min(ncols or math.ceil(math.sqrt(n)), n)
    nrows = math.ceil(n / ncols)
    cell_w, cell_h = max(t.width for t in tiles), max(t.height for t in tiles)
    font = ImageFont.load_default(size=font_size)
    ink = text_color(background)

    wrapped: list[list[str]] = []
    caption_h = 0
    if captions is not None:
        cell_w = max(cell_w, 6 * font_size)  # room for ~12 characters however small the tile
        wrapped = [_wrap(c, font, cell_w, caption_lines) for c in captions]
        caption_h = max(len(w) for w in wrapped) * _line_height(font) + 2

    width = ncols * cell_w + (ncols + 1) * pad
    title_lines: list[str] = []
    title_h = 0
    title_font = ImageFont.load_default(size=round(font_size * 1.4))
    if title:
        title_lines = _wrap(title, title_font, max(width - 2 * pad, 1), 3)
        title_h = len(title_lines) * _line_height(title_font) + pad
    height = title_h + nrows * (cell_h + caption_h) + (nrows + 1) * pad

    canvas = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(canvas)
    y = pad
    for line in title_lines:
        draw.text((width / 2, y), line, fill=ink, font=title_font, anchor="ma")
        y += _line_height(title_font)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        x0 = pad + c * (cell_w + pad)
        y0 = title_h + pad + r * (cell_h + caption_h + pad)
        canvas.paste(tile, (x0 + (cell_w - tile.width) // 2, y0 + (cell_h - tile.height) // 2))
        ty = y0 + cell_h + 2
        for line in wrapped[i] if wrapped else []:
            draw.text((x0 + cell_w / 2, ty), line, fill=ink, font=font, anchor="ma")
            ty += _line_height(font)
    return canvas
