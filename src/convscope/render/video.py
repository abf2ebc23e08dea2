"""Pictures of a clip's map: a frame strip (PNG) and an animation (GIF or WebP, Pillow).

A clip's map (C, T, H, W) is normalized ONCE over all its frames (:func:`clip_levels`), so a
frame the model ignored stays dark beside the frame that decided: per-frame scaling would show
every frame as equally important. Each frame is then drawn as :func:`.heatmap.overlay` draws an
image's map (``normalize=False``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from torch import Tensor

from ..errors import BadArgument
from .grid import image_grid
from .heatmap import Mode, Reduce, _finite, _normalize, overlay

AnimationFormat = Literal["gif", "webp"]
FRAME_MS = 250
"""Default display time of one frame of an animation (4 frames per second: slow enough to see
where the map moves)."""


def _clip(frames: Tensor, heat: Tensor) -> tuple[Tensor, Tensor]:
    """Check a clip (3, T, H, W) in [0, 1] and its map (C, T, h, w)."""
    if frames.ndim != 4 or heat.ndim != 4 or frames.shape[1] != heat.shape[1]:
        raise BadArgument(f"a clip (3, T, H, W) and its map (C, T, h, w) with the same T; got "
                          f"{tuple(frames.shape)} and {tuple(heat.shape)}")
    return frames.detach().float().cpu(), _finite(heat.detach(), "the map").float().cpu()


def clip_levels(heat: Tensor, *, mode: Mode = "unsigned", reduce: Reduce | None = None,
                clip_percentile: float = 99.5) -> Tensor:
    """A clip's map (C, T, h, w) scaled to [0, 1] with one scale for all frames, (1 or C, T, h, w)."""
    c, t, h, w = heat.shape
    flat = _normalize(heat.reshape(1, c, t * h, w), mode, clip_percentile, reduce)
    return flat.reshape(flat.shape[1], t, h, w)


def clip_overlays(frames: Tensor, heat: Tensor, *, mode: Mode = "unsigned", reduce: Reduce | None = None,
                  clip_percentile: float = 99.5, alpha: float | None = None,
                  cmap: str | None = None) -> list[Image.Image]:
    """Each frame of ``frames`` (3, T, H, W) with its slice of the map (C, T, h, w) over it,
    one scale for the whole clip (module notes)."""
    frames, heat = _clip(frames, heat)
    levels = clip_levels(heat, mode=mode, reduce=reduce, clip_percentile=clip_percentile)
    return [overlay(frames[:, i], levels[:, i], mode=mode, normalize=False, alpha=alpha, cmap=cmap)
            for i in range(frames.shape[1])]


def frame_indices(count: int, most: int) -> list[int]:
    """At most ``most`` frame indices of ``count``, evenly spaced, first and last included."""
    if most < 1:
        raise BadArgument(f"max_frames={most}: show at least one frame")
    if count <= most:
        return list(range(count))
    if most == 1:
        return [0]
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


def frame_strip(frames: Tensor, heat: Tensor, *, max_frames: int = 8, tile: int = 128,
                title: str | None = None, **options: Any) -> Image.Image:
    """Two rows: the frames of a clip (3, T, H, W) and their overlays (map (C, T, h, w), one
    scale for all frames), at most ``max_frames`` evenly spaced frames, captioned with their
    index and the share of the map's mass each carries."""
    pictures = clip_overlays(frames, heat, **options)
    frames, heat = _clip(frames, heat)
    shown = frame_indices(len(pictures), max_frames)
    mass = heat.abs().sum((0, 2, 3))
    share = mass / mass.sum() if float(mass.sum()) > 0 else mass
    tiles: list[Image.Image | Tensor] = [frames[:, i] for i in shown]
    tiles += [pictures[i] for i in shown]
    captions = [f"frame {i}" for i in shown] + [f"{100 * float(share[i]):.0f}% of map" for i in shown]
    return image_grid(tiles, captions=captions, ncols=len(shown), tile_size=tile, upscale="auto",
                      title=title, caption_lines=1)


def animation_bytes(pictures: Sequence[Image.Image], *, format: AnimationFormat = "gif",
                    frame_ms: int = FRAME_MS) -> bytes:
    """An endlessly looping animation of ``pictures`` (GIF or lossless WebP)."""
    if not pictures:
        raise BadArgument("an animation needs at least one frame")
    if format not in ("gif", "webp"):
        raise BadArgument(f"format={format!r}: 'gif' or 'webp'")
    buffer = io.BytesIO()
    first, *rest = [p.convert("RGB") for p in pictures]
    extra = {"lossless": True} if format == "webp" else {"optimize": False}
    first.save(buffer, format=format.upper(), save_all=True, append_images=rest,
               duration=max(1, int(frame_ms)), loop=0, **extra)
    return buffer.getvalue()


def save_animation(pictures: Sequence[Image.Image], path: str | Path, *,
                   frame_ms: int = FRAME_MS) -> Path:
    """Write :func:`animation_bytes` to ``path``; its suffix (.gif or .webp) picks the format."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("gif", "webp"):
        raise BadArgument(f"animation {path.name!r}: name a .gif or .webp file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(animation_bytes(pictures, format=suffix, frame_ms=frame_ms))  # type: ignore[arg-type]
    return path


def upscaled(pictures: Sequence[Image.Image], side: int) -> list[Image.Image]:
    """Small frames enlarged (nearest neighbour, an integer factor) so the longer side reaches
    about ``side`` pixels; larger frames unchanged."""
    out = []
    for p in pictures:
        factor = max(1, math.floor(side / max(p.size)))
        out.append(p.resize((p.width * factor, p.height * factor), Image.Resampling.NEAREST)
                   if factor > 1 else p)
    return out
