"""The leaderboard drawn: one panel of means with 95% error bars per metric, and the HTML page.

The reader's question is "which method wins, and is the win real?", so each panel lists the
methods best first (by the metric's own direction), draws the interval around each mean, and
colours the best method and those indistinguishable from it apart from the rest. Matplotlib
through its object API on an Agg canvas, as in :mod:`.plots` (no pyplot, safe in servers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .report import CSS, _table, data_uri

TOP = "#1f6fb4"
"""The best method and those indistinguishable from it."""
REST = "#9a9a9a"
PANEL_COLUMNS = 3


@dataclass(frozen=True)
class Panel:
    """One metric: its title and, best first, each method's mean and interval."""

    title: str
    methods: list[str]
    means: list[float]
    lows: list[float]
    highs: list[float]
    top: list[bool]
    """Whether each method is the best or indistinguishable from it."""


def interval_plot(panels: Sequence[Panel], title: str = "") -> Image.Image:
    """Every panel side by side (at most three a row), as one RGB picture."""
    count = max(len(panels), 1)
    columns = min(count, PANEL_COLUMNS)
    rows = (count + columns - 1) // columns
    longest = max((len(p.methods) for p in panels), default=1)
    fig = Figure(figsize=(4.2 * columns, 0.9 + 0.32 * longest * rows + 0.6 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for k, panel in enumerate(panels):
        ax = fig.add_subplot(rows, columns, k + 1)
        y = np.arange(len(panel.methods))[::-1]
        means = np.asarray(panel.means, dtype=float)
        err = np.stack([means - np.asarray(panel.lows), np.asarray(panel.highs) - means])
        colours = [TOP if t else REST for t in panel.top]
        for yi, m, e0, e1, colour in zip(y, means, err[0], err[1], colours):
            ax.errorbar([m], [yi], xerr=[[e0], [e1]], fmt="o", color=colour, capsize=3, markersize=5)
        ax.set_yticks(y, panel.methods, fontsize=9)
        ax.set_ylim(-0.7, len(panel.methods) - 0.3)
        ax.set_title(panel.title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())  # type: ignore[attr-defined]


def leaderboard_page(title: str, meta: str, header: list[str], rows: list[list[str]],
                     statements: list[str], plot: Image.Image) -> str:
    """The whole page as one self-contained HTML string (the plot inline, no script)."""
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1><div class='meta'>{escape(meta)}</div>"
            f"{leaderboard_fragment(header, rows, statements, plot)}"
            "</body></html>")


def leaderboard_fragment(header: list[str], rows: list[list[str]], statements: list[str],
                         plot: Image.Image) -> str:
    """The table, the statements and the plot: the body of the page (the web page shows it too)."""
    said = "".join(f"<p>{escape(s)}</p>" for s in statements)
    return (f"{_table(header, rows)}<div class='notes'>{said}</div>"
            f"<img alt='means with 95% intervals per metric' style='max-width:100%' "
            f"src='{data_uri(plot, max_side=4096)}'>")
