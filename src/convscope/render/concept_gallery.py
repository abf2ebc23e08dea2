"""Pictures of discovered concepts: a gallery (a row per concept: its heatmaps on its best
images, then its top patches) and a one-page HTML summary."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from PIL import Image
from torch import Tensor

from .grid import image_grid
from .heatmap import overlay
from .notebook import table_html
from .report import data_uri


def concept_gallery(pixels: Tensor, heatmaps: Tensor, importances: Sequence[float],
                    best: Sequence[Sequence[int]], crops: Sequence[Sequence[Tensor]],
                    values: Sequence[Sequence[float]], *, importance: str, title: str,
                    tile: int = 96) -> Image.Image:
    """Rows of ``len(best)`` concepts. ``pixels`` (N, 3, H, W) in [0, 1]; ``heatmaps`` (N, k, H, W)
    >= 0, each concept drawn on one scale over all images (its maximum), so a faint map stays
    faint; ``best[j]`` the images to overlay, ``crops[j]`` the patches with ``values[j]``."""
    columns = max(len(b) for b in best) + max(len(c) for c in crops)
    tiles: list[Image.Image | Tensor] = []
    captions: list[str] = []
    for j, (images, patches, numbers) in enumerate(zip(best, crops, values)):
        scale = float(heatmaps[:, j].max()) or 1.0
        row: list[Image.Image | Tensor] = [
            overlay(pixels[i], (heatmaps[i, j] / scale).clamp(0, 1), normalize=False) for i in images]
        words = [f"concept {j}: {importance} {importances[j]:.3g}" if n == 0 else f"image {i}"
                 for n, i in enumerate(images)]
        row += list(patches)
        words += [f"patch {v:.3g}" for v in numbers]
        blank = columns - len(row)
        row += [Image.new("RGB", (tile, tile), "white")] * blank
        words += [""] * blank
        tiles += row
        captions += words
    return image_grid(tiles, captions=captions, ncols=columns, tile_size=tile, upscale="auto",
                      title=title)


def concept_page(title: str, meta: str, gallery: Image.Image, rows: Sequence[Sequence[object]],
                 importance: str) -> str:
    """The HTML summary: the gallery and a table of the concepts."""
    table = table_html(["concept", f"importance ({importance})", "mean coefficient", "top images"],
                       rows)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"</head><body style='font-family:sans-serif'><h1>{escape(title)}</h1>"
            f"<p>{escape(meta)}</p>{table}<img alt='{escape(title)} gallery' "
            f"src='{data_uri(gallery, max_side=4096)}'></body></html>")
