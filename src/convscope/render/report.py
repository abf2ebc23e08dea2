"""Self-contained HTML reports: pictures inline as PNG data URIs, no external files or scripts.

The report knows nothing of methods; callers hand it sections of captioned cards, and notes
that say how to read them. Every report opens with the colour key of the overlays.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape

import torch
from PIL import Image

from .heatmap import DEFAULT_CMAP, colorize

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px}
.meta{color:#666;font-size:13px;margin-bottom:16px}
.head{display:flex;gap:20px;align-items:flex-start}
.head img{width:224px;height:auto;border:1px solid #ddd;image-rendering:auto}
table{border-collapse:collapse;font-size:14px} td,th{padding:3px 10px;text-align:left}
th{color:#555;font-weight:600;border-bottom:1px solid #ddd}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:14px;margin-top:14px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;width:224px}
.card img{width:224px;height:auto;display:block}
.card .name{font-weight:600;margin:6px 0 2px} .card .line{font-size:12px;color:#555}
.card .error{font-size:12px;color:#a00;margin-top:6px}
.key{display:flex;gap:28px;flex-wrap:wrap;font-size:13px;color:#444;margin:8px 0 4px}
.key img{width:180px;height:12px;display:block;border:1px solid #ccc;margin:3px 0}
.key .ends{display:flex;justify-content:space-between;width:182px;font-size:12px;color:#666}
.notes{font-size:13px;color:#444;max-width:900px} .notes p{margin:4px 0}
"""

COLOUR_KEY = (
    ("unsigned", "unsigned maps (how much a pixel matters)", "none", "most"),
    ("signed", "signed maps (for or against the class)", "against", "for"),
)
"""(mode, what it shows, low end, high end) per overlay colour map; the middle of a signed map
(white) is no effect. Overlays fade to the photo where a map is low (unsigned) or near 0 (signed)."""


SHOWN_MAX = 448
"""Pictures are shown 224 px wide; embedded at most twice that (sharp on high-DPI screens), with
their aspect ratio, so a page of overlays on large photos stays small."""


def data_uri(image: Image.Image, max_side: int = SHOWN_MAX) -> str:
    """The picture as a PNG data URI, shrunk to at most ``max_side`` pixels on its longer side."""
    buffer = io.BytesIO()
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class Card:
    """One picture with a title and a few short lines (or the error that prevented it)."""

    title: str
    image: Image.Image | None = None
    lines: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Section:
    """One input image: the picture, a small table, and a row of cards."""

    title: str
    image: Image.Image
    table_header: list[str] = field(default_factory=list)
    table_rows: list[list[str]] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)


def _table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)

    def cell(value: str) -> str:
        numeric = value.replace(".", "", 1).replace("%", "").replace("s", "").strip().isdigit()
        return f'<td class="num">{escape(value)}</td>' if numeric else f"<td>{escape(value)}</td>"

    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _card(card: Card) -> str:
    picture = f'<img alt="{escape(card.title)}" src="{data_uri(card.image)}">' if card.image else ""
    lines = "".join(f'<div class="line">{escape(line)}</div>' for line in card.lines)
    error = f'<div class="error">{escape(card.error)}</div>' if card.error else ""
    return f'<div class="card">{picture}<div class="name">{escape(card.title)}</div>{lines}{error}</div>'


def colour_bar(mode: str, width: int = 180, height: int = 12) -> Image.Image:
    """The overlay colour map of ``mode`` ("unsigned" or "signed") as a horizontal bar, low to high."""
    ramp = torch.linspace(0, 1, width).expand(height, width)
    return colorize(ramp, DEFAULT_CMAP[mode], as_pil=True)


@lru_cache(maxsize=1)
def colour_key() -> str:
    """The overlays' colour key as HTML (the report opens with it; the explainer page shows it)."""
    items = []
    for mode, what, low, high in COLOUR_KEY:
        items.append(f'<div>{escape(what)}<img alt="{escape(mode)} colour map" '
                     f'src="{data_uri(colour_bar(mode))}"><div class="ends"><span>{escape(low)}</span>'
                     f"<span>{escape(high)}</span></div></div>")
    return '<div class="key">' + "".join(items) + "</div>"


FAITHFULNESS_NOTE = (
    "deletion AUC ↓ / insertion AUC ↑ (Petsiuk et al. 2018): the map's pixels are removed (deletion, "
    "replaced by black) or put back onto a blurred copy (insertion), most important first, and the "
    "class probability is followed; the AUC is the area under that curve, in [0, 1]. A faithful map "
    "makes the probability fall fast when its pixels go (low deletion AUC) and rise fast when they "
    "come back (high insertion AUC).")


def html_report(title: str, sections: list[Section], meta: str = "", notes: list[str] | None = None) -> str:
    """The whole page as one HTML string; ``notes``: short paragraphs on how to read the cards."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>",
             f'<div class="meta">{escape(meta)}</div>', colour_key()]
    if notes:
        parts.append('<div class="notes">' + "".join(f"<p>{escape(n)}</p>" for n in notes) + "</div>")
    for s in sections:
        parts.append(f"<h2>{escape(s.title)}</h2><div class='head'>")
        parts.append(f'<img alt="{escape(s.title)}" src="{data_uri(s.image)}">')
        parts.append(_table(s.table_header, s.table_rows) + "</div>")
        parts.append('<div class="cards">' + "".join(_card(c) for c in s.cards) + "</div>")
    parts.append("</body></html>")
    return "".join(parts)
