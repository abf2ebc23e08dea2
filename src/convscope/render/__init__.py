"""Rendering: the only place tensors become pictures (PIL images, PNG files).

Computation (``convscope.methods``) returns tensors at input resolution; this package normalizes
them for display, colours them, overlays them on images and lays pictures out in captioned grids.
It never imports ``convscope.methods`` or ``convscope.data``.
"""

from convscope.render.grid import image_grid
from convscope.render.heatmap import (
    DEFAULT_CMAP,
    colorize,
    draw_boxes,
    map_levels,
    mask_image,
    normalize_map,
    overlay,
    overlay_table,
    overlays,
    png_bytes,
    save_png,
    text_color,
    to_pil,
)
from convscope.render.report import Card, Section, html_report
from convscope.render.segments import segmentation_overlay

__all__ = [
    "DEFAULT_CMAP",
    "Card",
    "Section",
    "colorize",
    "draw_boxes",
    "html_report",
    "image_grid",
    "map_levels",
    "mask_image",
    "normalize_map",
    "overlay",
    "overlay_table",
    "overlays",
    "png_bytes",
    "save_png",
    "segmentation_overlay",
    "text_color",
    "to_pil",
]
