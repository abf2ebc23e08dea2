"""Maps of a dataset drawn as pictures: a scatter of 2-D coordinates coloured by class, with thumbnails.

A t-SNE or UMAP map is read by looking at which images sit together, so the scatter draws a
spread-out subset of the images themselves on top of the coloured points: thumbnails are chosen
greedily in a seeded order, each at least ``thumbnail_spacing`` (a fraction of the map's extent)
from those already drawn, so they do not pile up in dense clusters and every region is shown.
Each thumbnail gets a frame in its point's colour.

Matplotlib is used through its object API on an Agg canvas (no pyplot, no global figure state),
so it is safe in threads and servers and never opens a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from PIL import Image
from torch import Tensor

from convscope.errors import BadArgument

UNLABELLED = (0.6, 0.6, 0.6, 1.0)
_DPI = 100


def class_colors(count: int) -> np.ndarray:
    """(count, 4) RGBA: tab10 / tab20 for up to 20 classes, evenly spaced hues beyond."""
    import matplotlib

    if count <= 10:
        return np.asarray(matplotlib.colormaps["tab10"].colors)[:count]  # type: ignore[attr-defined]
    if count <= 20:
        return np.asarray(matplotlib.colormaps["tab20"].colors)[:count]  # type: ignore[attr-defined]
    return matplotlib.colormaps["turbo"](np.linspace(0.05, 0.95, count))[:, :3]


def embedding_scatter(
    coords: Tensor,
    labels: Tensor | np.ndarray | Sequence[int] | None = None,
    *,
    predictions: Tensor | np.ndarray | Sequence[int] | None = None,
    color_by: Literal["label", "prediction"] = "label",
    class_names: Sequence[str] | None = None,
    thumbnails: Tensor | np.ndarray | None = None,
    max_thumbnails: int = 150,
    thumbnail_size: int = 28,
    thumbnail_spacing: float = 0.045,
    size: tuple[int, int] = (1200, 1000),
    point_size: float | None = None,
    title: str | None = None,
    seed: int = 0,
) -> Image.Image:
    """Scatter of ``coords`` (N, 2) coloured by label or prediction, with image thumbnails.

    Args:
        coords: (N, 2) map coordinates (NaN rows, e.g. skipped images, are left out).
        labels / predictions: (N,) class indices, -1 for none. ``color_by`` picks which colours
            the points; with both given and ``color_by="prediction"``, misclassified points get
            a black edge.
        class_names: legend entries (default: the class indices).
        thumbnails: (N, C, h, w) tensor in [0, 1] (or uint8), or an (N, h, w, 3) uint8 array.
        max_thumbnails: at most this many thumbnails are drawn (0: none).
        thumbnail_size: drawn size of a thumbnail in pixels.
        thumbnail_spacing: minimum distance between drawn thumbnails, as a fraction of the extent.
        size: (width, height) of the picture in pixels.
    """
    xy = _points(coords)
    n = xy.shape[0]
    lab = _classes(labels, n, "labels")
    pred = _classes(predictions, n, "predictions")
    if color_by not in ("label", "prediction"):
        raise BadArgument(f"color_by={color_by!r}: use 'label' or 'prediction'")
    colour_idx = pred if color_by == "prediction" else lab
    if colour_idx is None:
        raise BadArgument(f"color_by={color_by!r} but no {color_by}s were given")
    shown = np.isfinite(xy).all(1)
    known = colour_idx[colour_idx >= 0]
    count = max(len(class_names) if class_names else 0, int(known.max()) + 1 if known.size else 0)
    palette = class_colors(max(count, 1))
    rgba = np.array([palette[c] if c >= 0 else UNLABELLED[:3] for c in colour_idx]).reshape(n, 3)

    fig = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.78 if count else 0.96, 0.92 if title else 0.96))
    ax.set_xticks([])
    ax.set_yticks([])
    dot = point_size if point_size is not None else float(np.clip(6000 / max(n, 1), 2, 40))
    edge = "none"
    if color_by == "prediction" and lab is not None and pred is not None:
        wrong = (lab >= 0) & (pred != lab)
        edge = np.where(wrong[:, None], np.array([[0.0, 0.0, 0.0]]), rgba)  # type: ignore[assignment]
        edge = edge[shown]  # type: ignore[index]
    ax.scatter(xy[shown, 0], xy[shown, 1], s=dot, c=rgba[shown], edgecolors=edge, linewidths=0.6)
    if thumbnails is not None and max_thumbnails > 0:
        _draw_thumbnails(ax, xy, shown, rgba, _thumbs(thumbnails, n), max_thumbnails,
                         thumbnail_size, thumbnail_spacing, seed)
    if count:
        names = list(class_names) if class_names else [str(i) for i in range(count)]
        handles = [Line2D([], [], marker="o", linestyle="", color=palette[i], markersize=8,
                          label=names[i] if i < len(names) else str(i)) for i in range(count)]
        if (colour_idx < 0).any():
            handles.append(Line2D([], [], marker="o", linestyle="", color=UNLABELLED, markersize=8,
                                  label="none"))
        ax.legend(handles=handles[:40], loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  title="prediction" if color_by == "prediction" else "label", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())  # type: ignore[attr-defined]


def _points(coords: Tensor) -> np.ndarray:
    if not isinstance(coords, (Tensor, np.ndarray)):
        raise BadArgument(f"coords must be an (N, 2) tensor, not {type(coords).__name__}")
    xy = (coords.detach().cpu().double().numpy() if isinstance(coords, Tensor)
          else np.asarray(coords, dtype=np.float64))
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] == 0:
        raise BadArgument(f"coords of shape {xy.shape}: need (N, 2); project to 2 dimensions first")
    return xy


def _classes(values: Tensor | np.ndarray | Sequence[int] | None, n: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values.cpu() if isinstance(values, Tensor) else values, dtype=np.int64)
    if arr.shape != (n,):
        raise BadArgument(f"{name} of shape {arr.shape} do not match {n} points")
    return arr


def _thumbs(thumbnails: Tensor | np.ndarray, n: int) -> np.ndarray:
    """(N, h, w, 3) uint8 from either layout."""
    if isinstance(thumbnails, Tensor):
        t = thumbnails.detach().cpu()
        if t.ndim != 4 or t.shape[1] not in (1, 3):
            raise BadArgument(f"thumbnails of shape {tuple(t.shape)}: need (N, 1|3, h, w)")
        if t.dtype != torch.uint8:
            t = (t.float().clamp(0, 1) * 255).round().to(torch.uint8)
        arr = t.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()
    else:
        arr = np.asarray(thumbnails)
        if arr.ndim != 4 or arr.shape[3] not in (1, 3) or arr.dtype != np.uint8:
            raise BadArgument(f"thumbnail array {arr.shape} {arr.dtype}: need (N, h, w, 3) uint8")
        arr = np.repeat(arr, 3, axis=3) if arr.shape[3] == 1 else arr
    if arr.shape[0] != n:
        raise BadArgument(f"{arr.shape[0]} thumbnails for {n} points")
    return arr


def _draw_thumbnails(ax: object, xy: np.ndarray, shown: np.ndarray, rgba: np.ndarray,
                     thumbs: np.ndarray, limit: int, px: int, spacing: float, seed: int) -> None:
    """Greedy, seeded: visit points in random order, keep those far enough from kept ones."""
    candidates = np.flatnonzero(shown)
    if not candidates.size:
        return
    order = np.random.default_rng(seed).permutation(candidates)
    extent = np.ptp(xy[candidates], axis=0).max() or 1.0
    min_dist = spacing * extent
    kept: list[int] = []
    for i in order:
        if kept and np.min(np.linalg.norm(xy[kept] - xy[i], axis=1)) < min_dist:
            continue
        kept.append(int(i))
        if len(kept) >= limit:
            break
    for i in kept:
        zoom = px / max(thumbs.shape[1], thumbs.shape[2]) * 72 / _DPI  # OffsetImage counts points
        box = AnnotationBbox(OffsetImage(thumbs[i], zoom=zoom, interpolation="antialiased"),
                             (xy[i, 0], xy[i, 1]), frameon=True, pad=0.08,
                             bboxprops={"edgecolor": rgba[i], "linewidth": 1.5})
        ax.add_artist(box)  # type: ignore[attr-defined]
