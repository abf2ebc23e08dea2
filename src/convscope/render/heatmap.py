"""Turn attribution maps into pictures: normalize, colorize, overlay, mask, boxes.

Attribution values have no natural scale and heavy tails (a few pixels hold most of the mass), so
maps are scaled per sample by a high percentile instead of the maximum: one hot pixel must not turn
the rest of the picture black. Signed maps (DeepLIFT, LRP, gradient x input) keep their sign and
are shown with a diverging colormap whose midpoint, 0.5, means "zero contribution".

Shapes: images are float ``(3,H,W)`` / ``(1,3,H,W)`` in [0,1] (or PIL images); maps are ``(H,W)``,
``(C,H,W)`` or ``(B,C,H,W)``. Everything here runs on CPU copies; nothing is written back.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, overload

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageColor, ImageDraw, ImageFont
from torch import Tensor

from convscope.errors import BadArgument

Mode = Literal["unsigned", "signed", "abs"]
Reduce = Literal["max", "mean", "sum"]
Color = str | tuple[int, int, int]
ImageLike = Tensor | Image.Image

DEFAULT_CMAP: dict[str, str] = {"unsigned": "inferno", "abs": "inferno", "signed": "bwr"}
"""Sequential maps for magnitudes; a diverging map (white at 0.5) for signed values. ``bwr``
rather than ``RdBu_r``: its ends are saturated red/blue, which stay readable when blended over a
photo, where RdBu_r's dark ends read as shadows."""


def _finite(t: Tensor, what: str) -> Tensor:
    if not torch.is_tensor(t):
        t = torch.as_tensor(np.asarray(t))
    t = t.detach().float()
    if t.numel() and not all(math.isfinite(v) for v in torch.aminmax(t)):  # one pass: NaN, inf show
        raise BadArgument(f"{what} contains NaN or infinite values; fix the computation upstream")
    return t


def _percentile(flat: Tensor, q: float) -> Tensor:
    """Per-row q-th percentile of ``(B, N)``; ``kthvalue`` because ``torch.quantile`` caps N."""
    k = min(max(int(np.ceil(q / 100.0 * flat.shape[1])), 1), flat.shape[1])
    return flat.kthvalue(k, dim=1).values


def normalize_map(
    m: Tensor,
    *,
    mode: Mode = "unsigned",
    clip_percentile: float = 99.5,
    reduce: Reduce | None = None,
) -> Tensor:
    """Scale a map to [0, 1] per sample, clipping the top ``100 - clip_percentile`` % of values.

    * ``unsigned``: ``min`` -> 0, the percentile -> 1.
    * ``abs``: ``|m|``, 0 -> 0, the percentile of ``|m|`` -> 1.
    * ``signed``: 0 -> 0.5, ``±`` the percentile of ``|m|`` -> 1 / 0 (symmetric, so the sign
      is never shifted by an offset).

    ``reduce`` first collapses channels (a C=3 input-gradient map): ``"max"`` takes the largest
    ``|value|`` over channels (Simonyan et al. 2014, Sec. 3.1), ``"mean"``/``"sum"`` keep the
    sign. Without ``reduce`` all channels of a sample share one scale. When the percentile equals
    the floor (sparse maps) the maximum is used instead; a constant map becomes all 0 (0.5 when
    signed) rather than NaN. The output keeps the input's rank (channels become 1 if reduced).
    """
    return _normalize(_finite(m, "the map"), mode, clip_percentile, reduce)


def _normalize(t: Tensor, mode: Mode, clip_percentile: float, reduce: Reduce | None) -> Tensor:
    """:func:`normalize_map` of a float map already checked to be finite."""
    if mode not in DEFAULT_CMAP:
        raise BadArgument(f"mode={mode!r}; use 'unsigned', 'signed' or 'abs'")
    if not 0.0 < clip_percentile <= 100.0:
        raise BadArgument(f"clip_percentile={clip_percentile}; use a value in (0, 100]")
    if t.dim() not in (2, 3, 4) or t.numel() == 0:
        raise BadArgument(f"map of shape {tuple(t.shape)}; use (H,W), (C,H,W) or (B,C,H,W)")
    rank = t.dim()
    x = t.reshape((1, 1, *t.shape)) if rank == 2 else t.unsqueeze(0) if rank == 3 else t
    if reduce == "max":
        x = x.abs().amax(1, keepdim=True)
    elif reduce == "mean":
        x = x.mean(1, keepdim=True)
    elif reduce == "sum":
        x = x.sum(1, keepdim=True)
    elif reduce is not None:
        raise BadArgument(f"reduce={reduce!r}; use 'max', 'mean', 'sum' or None")

    flat = x.flatten(1)
    mag = flat if mode == "unsigned" else flat.abs()
    lo = flat.amin(1) if mode == "unsigned" else flat.new_zeros(flat.shape[0])
    hi = _percentile(mag, clip_percentile)
    hi = torch.where(hi > lo, hi, mag.amax(1))  # sparse map: percentile sits on the floor
    span = (hi - lo).clamp_min(0)
    safe = torch.where(span > 0, span, torch.ones_like(span))[:, None]
    if mode == "signed":
        out = 0.5 + 0.5 * (flat / safe).clamp(-1, 1)
    else:
        out = ((mag - lo[:, None]) / safe).clamp(0, 1)
    out = torch.where(span[:, None] > 0, out, torch.full_like(out, 0.5 if mode == "signed" else 0))
    out = out.reshape(x.shape)
    return out[0, 0] if rank == 2 else out[0] if rank == 3 else out


@overload
def colorize(m01: Tensor, cmap: str = ..., *, as_pil: Literal[False] = ...) -> Tensor: ...
@overload
def colorize(m01: Tensor, cmap: str = ..., *, as_pil: Literal[True]) -> Image.Image: ...
def colorize(m01: Tensor, cmap: str = "inferno", *, as_pil: bool = False) -> Tensor | Image.Image:
    """Map values in [0, 1] through a matplotlib colormap -> RGB ``(3,H,W)`` (or ``(B,3,H,W)``).

    Input ``(H,W)``, ``(1,H,W)`` or ``(B,1,H,W)``. The colours are exactly what calling the
    matplotlib colormap gives (its own table, indexed as it indexes it, see :func:`_colors`), so
    0.5 gets exactly ``cmap(0.5)`` -- the neutral colour of a diverging map.
    """
    t = _finite(m01, "the map").cpu()
    if t.dim() == 4 and t.shape[1] == 1:
        t = t[:, 0]
    elif t.dim() == 3 and t.shape[0] == 1:
        t = t[0]
    elif t.dim() != 2:
        raise BadArgument(f"colorize needs one channel, got shape {tuple(m01.shape)}; reduce first")
    rgb = _colors(t.clamp(0, 1), cmap)
    if as_pil:
        if rgb.dim() != 3:
            raise BadArgument("as_pil=True needs a single map, not a batch")
        return to_pil(rgb)
    return rgb


@functools.lru_cache(maxsize=64)
def _colormap_table(cmap: str) -> Tensor:
    """``(3, N)`` float32: the ``N`` colours of a matplotlib colormap (its lookup table), read
    once per name instead of on every call (matplotlib rebuilds it for each copy it hands out)."""
    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise BadArgument(f"unknown colormap {cmap!r}; see matplotlib.colormaps") from None
    return torch.from_numpy(cm(np.arange(cm.N))[:, :3].astype(np.float32).T.copy())


def _colors(m01: Tensor, cmap: str) -> Tensor:
    """``(..., H, W)`` float32 values in [0, 1] -> ``(..., 3, H, W)`` colours, indexed as
    matplotlib indexes its table for float input: entry ``floor(v * N)`` (float32 product),
    1.0 taking the last."""
    table = _colormap_table(cmap)
    n = table.shape[1]
    index = (m01.float() * n).to(torch.int64).clamp_(0, n - 1)
    rgb = table.index_select(1, index.flatten()).reshape(3, *index.shape)
    return rgb.movedim(0, -3)


def _image_tensor(image: ImageLike) -> Tensor:
    """A single RGB image as float ``(3,H,W)`` in [0,1] on CPU, from PIL or a tensor. A float
    image already in [0, 1] (every loaded image) is checked in one pass and not copied."""
    if isinstance(image, Image.Image):
        arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1)
    t = image.detach()
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    else:
        t = t.float()
        if t.numel() == 0 or not _in_unit_range(t):
            t = _finite(t, "the image").clamp(0, 1)
    t = t.cpu()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise BadArgument(f"image of shape {tuple(image.shape)}; use (3,H,W) or (1,3,H,W)")
    return t.expand(3, -1, -1)


def _in_unit_range(t: Tensor) -> bool:
    """Whether every value is in [0, 1] (so finite too: NaN fails both comparisons), in one pass."""
    low, high = torch.aminmax(t)
    return bool(low >= 0) and bool(high <= 1)


def _resize_map(m: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a (…,H,W) map to ``size=(H,W)`` for display, keeping its leading dimensions."""
    if tuple(m.shape[-2:]) == size:
        return m
    lead = m.shape[:-2]
    x = m.reshape(1, -1, *m.shape[-2:])
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x.reshape(*lead, *size)


def place_map(m: Tensor, size: tuple[int, int], box: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Put a ``(C,h,w)`` map of the model's input back on the original image it came from.

    ``box`` = (top, left, bottom, right): the region of the ``size=(H,W)`` image that the model
    input covered (:meth:`convscope.model.Preprocess.box`; inside the image for a centre crop,
    around it for a letterbox). Each image pixel centre is mapped into the map's coordinates and
    sampled bilinearly (with the whole image as the box this is a bilinear resize). Returns the
    ``(C,H,W)`` map and the ``(H,W)`` bool mask of the pixels the model saw.
    """
    top, left, bottom, right = (float(v) for v in box)
    if bottom <= top or right <= left:
        raise BadArgument(f"box {tuple(box)} is empty; use (top, left, bottom, right)")
    ys = (torch.arange(size[0], dtype=torch.float32) + 0.5 - top) / (bottom - top) * 2 - 1
    xs = (torch.arange(size[1], dtype=torch.float32) + 0.5 - left) / (right - left) * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (H, W, (x, y))
    x = m.detach().float().cpu().reshape(1, -1, *m.shape[-2:])
    placed = F.grid_sample(x, grid[None], mode="bilinear", padding_mode="border", align_corners=False)
    seen = (ys.abs() <= 1)[:, None] & (xs.abs() <= 1)[None, :]
    return placed.reshape(*m.shape[:-2], *size), seen


def _blend_alpha(alpha: float | None, mode: Mode) -> float:
    """The colour's strength: default 0.7 for signed maps, 0.5 otherwise; checked."""
    if alpha is None:
        alpha = 0.7 if mode == "signed" else 0.5
    if not 0.0 <= alpha <= 1.0:
        raise BadArgument(f"alpha={alpha}; use a value in [0, 1]")
    return alpha


def _one_map(heat: Tensor, reduce: Reduce | None, normalize: bool) -> Tensor:
    """One finite ``(C,h,w)`` map from a map or a batch of one (several channels need a reduce)."""
    h = _finite(heat, "the map").cpu()
    if h.dim() == 4:
        if h.shape[0] != 1:
            raise BadArgument(f"overlay takes one map, got a batch of {h.shape[0]}; use overlays")
        h = h[0]
    if h.dim() == 3 and h.shape[0] != 1 and (reduce is None or not normalize):
        raise BadArgument(f"a map with {h.shape[0]} channels needs reduce='max'|'mean'|'sum'")
    return h


def _signed_weight(h: Tensor, alpha: float) -> Tensor:
    """A signed map's colour weight per pixel: zero evidence (0.5) leaves the image untouched,
    half the clip scale and more is fully ``alpha``."""
    return (2 * (2 * h - 1).abs()).clamp_(max=1).mul_(alpha)


def overlay(
    image: ImageLike,
    heat: Tensor,
    *,
    alpha: float | None = None,
    cmap: str | None = None,
    mode: Mode = "unsigned",
    reduce: Reduce | None = None,
    clip_percentile: float = 99.5,
    normalize: bool = True,
    box: Sequence[float] | None = None,
    unseen: float = 0.5,
) -> Image.Image:
    """Blend a coloured map over one image, upsampled bilinearly to the image size.

    Unsigned/abs maps blend with a constant ``alpha`` (default 0.5). Signed maps blend with
    ``alpha * min(1, 2|2v-1|)`` (default alpha 0.7): zero evidence leaves the image untouched
    instead of washing it out in the colormap's white, and anything above half the clip scale is
    fully visible. ``normalize=False`` takes a map already in [0, 1] (0.5 = zero when signed).

    ``box``: the map covers only this (top, left, bottom, right) region of ``image`` (the crop
    or letterbox the model saw, see :func:`place_map`); it is scaled on its own pixels, placed
    there, and the pixels the model never saw are darkened to ``unseen`` brightness.
    """
    alpha = _blend_alpha(alpha, mode)
    img = _image_tensor(image)
    h = _one_map(heat, reduce, normalize)
    size = (img.shape[-2], img.shape[-1])
    seen: Tensor | None = None  # None: the model saw every pixel
    if box is None:
        h = _resize_map(h, size)
    if normalize:
        h = _normalize(h, mode, clip_percentile, reduce)
    if box is not None:
        h, seen = place_map(h, size, box)
        if bool(seen.all()):
            seen = None
    h = h.reshape(size).clamp(0, 1)
    rgb = _colors(h, cmap or DEFAULT_CMAP[mode])
    # out = image * shade * (1 - a) + colour * a, with a = alpha * ramp * seen, as (H, W) weights
    if mode == "signed":
        a = _signed_weight(h, alpha)
        a = a if seen is None else a * seen
    elif seen is None:
        return _to_pil_unit(torch.lerp(img, rgb, alpha))
    else:
        a = seen * alpha
    keep = 1 - a if seen is None else (1 - a) * torch.where(seen, 1.0, unseen)
    return _to_pil_unit(torch.addcmul(img * keep, rgb, a))


def map_levels(
    heat: Tensor,
    *,
    mode: Mode = "unsigned",
    reduce: Reduce | None = None,
    clip_percentile: float = 99.5,
    normalize: bool = True,
) -> Image.Image:
    """The map as :func:`overlay` normalizes it, at its own resolution, in 256 gray levels.

    With :func:`overlay_table` this is :func:`overlay` in two halves: a browser scales the levels
    onto the box the model saw (bilinearly, as :func:`place_map` does) and looks each level up
    in the table; the web page draws the map that way over the photo it already shows instead
    of waiting for the whole overlay to be drawn and encoded on the server.
    """
    h = _one_map(heat, reduce, normalize)
    if normalize:
        h = _normalize(h, mode, clip_percentile, reduce)
    levels = h.reshape(h.shape[-2:]).clamp(0, 1).mul(255).round_().to(torch.uint8)
    return Image.fromarray(levels.numpy(), mode="L")


def overlay_table(mode: Mode = "unsigned", cmap: str | None = None, alpha: float | None = None) -> Tensor:
    """``(256, 4)`` uint8: :func:`overlay`'s colour and blend weight (as alpha) for each level of
    :func:`map_levels`; drawing a level's entry "over" the image gives overlay's blend."""
    alpha = _blend_alpha(alpha, mode)
    h = torch.linspace(0, 1, 256)
    rgb = _colors(h[None], cmap or DEFAULT_CMAP[mode]).reshape(3, 256)
    a = _signed_weight(h.clone(), alpha) if mode == "signed" else torch.full_like(h, alpha)
    return torch.cat([rgb, a[None]]).mul_(255).round_().clamp_(0, 255).to(torch.uint8).T.contiguous()


def overlays(images: Tensor, heats: Tensor, **options: object) -> list[Image.Image]:
    """:func:`overlay` for each pair of a ``(B,3,H,W)`` batch and a ``(B,C,h,w)`` map batch."""
    if images.shape[0] != heats.shape[0]:
        raise BadArgument(f"{images.shape[0]} images but {heats.shape[0]} maps")
    return [overlay(i, m, **options) for i, m in zip(images, heats, strict=True)]  # type: ignore[arg-type]


def mask_image(image: ImageLike, mask: Tensor, *, dim: float = 0.2) -> Image.Image:
    """Show the image where ``mask`` is 1 and darken it to ``dim`` brightness elsewhere.

    ``mask``: bool or float in [0,1], any map shape with one channel; resized bilinearly to the
    image. A bool mask is thresholded again at 0.5 after resizing, so its edge stays crisp but
    follows a smooth contour instead of the low-resolution map's staircase.
    """
    img = _image_tensor(image)
    binary = mask.dtype == torch.bool
    m = _finite(mask, "the mask").cpu()
    if m.dim() < 2 or m.numel() != m.shape[-1] * m.shape[-2]:
        raise BadArgument(f"mask of shape {tuple(mask.shape)}; use one channel (H,W)")
    m = m.reshape(m.shape[-2:])
    m = _resize_map(m, (img.shape[-2], img.shape[-1])).clamp(0, 1)
    if binary:
        m = (m >= 0.5).float()
    return to_pil(img * (dim + (1 - dim) * m))


def to_pil(image: ImageLike) -> Image.Image:
    """A ``(3,H,W)``, ``(1,3,H,W)``, ``(1,H,W)`` or ``(H,W)`` tensor in [0,1] (or uint8) -> PIL."""
    if isinstance(image, Image.Image):
        return image
    t = image.detach().cpu()
    if t.dtype != torch.uint8:
        t = (_finite(t, "the image").clamp(0, 1) * 255).round().to(torch.uint8)
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 3 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        return Image.fromarray(t.numpy(), mode="L")
    if t.dim() == 3 and t.shape[0] in (3, 4):
        return Image.fromarray(t.permute(1, 2, 0).contiguous().numpy())
    raise BadArgument(f"image of shape {tuple(image.shape)}; use (3,H,W), (1,H,W) or (H,W)")


def _to_pil_unit(rgb: Tensor) -> Image.Image:
    """A ``(3,H,W)`` float tensor of blended values in [0, 1] (up to float rounding, never NaN)
    -> RGB PIL image, rounded as :func:`to_pil` rounds, without its checks (computed here)."""
    pixels = rgb.mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())


def save_png(image: ImageLike, path: str | Path) -> Path:
    """Write an image (PIL or tensor) as PNG, creating missing parent folders; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image).save(p, format="PNG")
    return p


def png_bytes(image: ImageLike) -> bytes:
    """An image (PIL or tensor) encoded as PNG, for answers that are not files (the web app,
    notebooks' ``_repr_png_``), encoded for speed by :func:`_encode_png`; the pixels are the
    same as in any PNG of them."""
    picture = to_pil(image)
    if picture.mode not in ("L", "RGB", "RGBA"):
        picture = picture.convert("RGB")
    return _encode_png(np.asarray(picture))


_PNG_COLOR_TYPE = {1: 0, 3: 2, 4: 6}  # gray, RGB, RGBA


def _encode_png(pixels: np.ndarray) -> bytes:
    """8-bit ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` pixels as a PNG file.

    Every row gets PNG's "up" filter (its difference to the row above) and zlib compresses at
    level 1 with run-length matches only (``Z_RLE``). PIL tries all five filters on every row
    and keeps the best: for a 451x300 overlay that choice alone took 5 of its 10 ms (at level 1),
    for a file no smaller than this one's (photos and maps change little from row to row; flat
    areas become runs of zeros).
    """
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = np.ascontiguousarray(pixels, dtype=np.uint8).reshape(height, width * channels)
    filtered = np.empty((height, 1 + width * channels), dtype=np.uint8)
    filtered[:, 0] = 2  # the "up" filter; the first row's "row above" is zeros
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 wraps around, as PNG wants
    packer = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    idat = packer.compress(filtered.data) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOR_TYPE[channels], 0, 0, 0)
    return b"".join([b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header), _png_chunk(b"IDAT", idat),
                     _png_chunk(b"IEND", b"")])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def text_color(background: Color) -> str:
    """Black or white, whichever reads better on ``background`` (Rec. 601 luma)."""
    rgb = ImageColor.getrgb(background) if isinstance(background, str) else background
    return "black" if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else "white"


def draw_boxes(
    image: ImageLike,
    boxes: Tensor | Sequence[Sequence[float]],
    labels: Sequence[str] | None = None,
    *,
    color: Color = (255, 40, 40),
    width: int = 2,
) -> Image.Image:
    """Draw boxes given as ``(top, left, bottom, right)`` pixels, bottom/right exclusive.

    That is the slice convention ``image[top:bottom, left:right]`` used by the localization
    metrics, so the outline covers rows ``top`` and ``bottom-1``, columns ``left`` and
    ``right-1``. Labels sit on a filled tab above each box (inside it at the top edge).
    """
    out = to_pil(image).convert("RGB").copy()
    rows = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4).round().long().tolist()
    if labels is not None and len(labels) != len(rows):
        raise BadArgument(f"{len(labels)} labels for {len(rows)} boxes")
    draw = ImageDraw.Draw(out)
    ink = text_color(color)
    font = ImageFont.load_default(size=max(10, min(out.size) // 20))
    for i, (top, left, bottom, right) in enumerate(rows):
        if bottom <= top or right <= left:
            raise BadArgument(f"box {i} {(top, left, bottom, right)} is empty; use (t, l, b, r)")
        draw.rectangle((left, top, right - 1, bottom - 1), outline=color, width=width)
        if labels is not None and labels[i]:
            _, y0, x1, y1 = draw.textbbox((0, 0), labels[i], font=font)
            th = y1 - y0 + 4
            ty = top - th if top - th >= 0 else top
            draw.rectangle((left, ty, left + x1 + 4, ty + th - 1), fill=color)
            draw.text((left + 2, ty + 2 - y0), labels[i], fill=ink, font=font)
    return out
