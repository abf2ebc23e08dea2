"""What result objects show in a notebook: PNG bytes and small HTML fragments.

Jupyter (classic, JupyterLab, VS Code, Colab) asks an object for ``_repr_png_`` / ``_repr_html_``
and shows the richest one it gets. The result dataclasses of :mod:`convscope.tasks` keep those
methods one line long and call these functions, so nothing here needs IPython: the output is
plain PNG bytes and self-contained HTML (pictures inline as base64 PNG, no script, no external
file), which every front end renders and a saved notebook keeps.

HTML fragments are written to sit inside the notebook page: inline styles only, never a global
``<style>`` that would restyle the notebook. A whole page (the report) goes into an
``<iframe srcdoc>`` so its stylesheet stays in its own document.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from PIL import Image

from .grid import image_grid
from .heatmap import ImageLike, to_pil
from .report import data_uri

TILE = 224
"""Tiles of a notebook grid are fitted into (or enlarged to) this many pixels."""

MAX_SAMPLES = 16
"""A batch shows at most this many samples; the caption says how many were left out."""

NOTEBOOK_SIDE = 1024
"""Pictures embedded in notebook HTML keep at most this many pixels on their longer side."""

_FIGURE = "margin:0;display:inline-block;font-family:system-ui,sans-serif"
_CAPTION = "font-size:13px;color:#444;margin-top:4px;max-width:{w}px"
_TABLE = "border-collapse:collapse;font-size:13px;font-family:system-ui,sans-serif"
_CELL = "padding:2px 10px;text-align:{align};border-bottom:1px solid #e4e4e4"


def figure_html(image: ImageLike, caption: str = "", *, alt: str = "") -> str:
    """One picture with a caption under it, as an HTML fragment."""
    picture = to_pil(image)
    uri = data_uri(picture, max_side=NOTEBOOK_SIDE)
    width = round(picture.width * min(1.0, NOTEBOOK_SIDE / max(picture.size)))
    text = (f'<figcaption style="{_CAPTION.format(w=max(width, 320))}">{escape(caption)}'
            "</figcaption>") if caption else ""
    return (f'<figure style="{_FIGURE}"><img alt="{escape(alt or caption)}" src="{uri}" '
            f'style="max-width:100%;height:auto">{text}</figure>')


def table_html(header: Sequence[str], rows: Sequence[Sequence[object]], caption: str = "") -> str:
    """A plain table; numbers are right-aligned, floats shown with 4 significant digits."""
    def cell(value: object, tag: str = "td") -> str:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        text = f"{value:.4g}" if isinstance(value, float) else "" if value is None else str(value)
        return f'<{tag} style="{_CELL.format(align="right" if number else "left")}">{escape(text)}</{tag}>'

    title = f'<caption style="text-align:left;font-weight:600;padding:4px 0">{escape(caption)}</caption>' \
        if caption else ""
    head = "<tr>" + "".join(cell(h, "th") for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f'<table style="{_TABLE}">{title}{head}{body}</table>'


def page_iframe(page: str, height: int = 640) -> str:
    """A whole HTML page shown in an ``<iframe srcdoc>``: its styles stay inside the frame."""
    return (f'<iframe srcdoc="{escape(page, quote=True)}" style="width:100%;height:{int(height)}px;'
            'border:1px solid #ddd;border-radius:4px" sandbox="allow-same-origin"></iframe>')


def sample_grid(pictures: Sequence[Image.Image], captions: Sequence[str], title: str,
                total: int | None = None) -> Image.Image:
    """Pictures of a batch side by side (at most :data:`MAX_SAMPLES`), captioned, titled.

    ``total``: how many samples the batch has, when ``pictures`` are only the first of them
    (the title then says how many are shown)."""
    shown = len(pictures)
    if total is not None and total > shown:
        title = f"{title} (first {shown} of {total})"
    return image_grid(list(pictures), captions=list(captions), ncols=min(4, shown),
                      tile_size=TILE, upscale="auto", title=title, caption_lines=3)
