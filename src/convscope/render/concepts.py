"""Concept results drawn: the TCAV bar chart with significance marks, and a one-page HTML summary.

The chart answers "does the class use this concept, at which layer, and is it more than chance?":
one group of bars per layer, one bar per concept (its mean TCAV score over the random runs, with
their standard deviation), a grey bar for random versus random, and above each concept ``*``
when its Bonferroni-corrected p-value passes, ``n.s.`` when not. Matplotlib through its object
API on an Agg canvas, as in :mod:`.plots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .plots import class_colors
from .report import CSS, _table, data_uri

RANDOM = "#b0b0b0"


def tcav_chart(concepts: Sequence[str], layers: Sequence[str], means: np.ndarray, stds: np.ndarray,
               random_means: np.ndarray, random_stds: np.ndarray, significant: np.ndarray,
               title: str = "") -> Image.Image:
    """Bars of TCAV scores: ``means``/``stds``/``significant`` (concepts, layers), random (layers,)."""
    groups = len(concepts) + 1
    width = 0.8 / groups
    fig = Figure(figsize=(max(4.0, 1.1 + 0.55 * groups * len(layers)), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(layers))
    colours = class_colors(max(len(concepts), 1))
    for i, name in enumerate(concepts):
        at = x - 0.4 + width * (i + 0.5)
        ax.bar(at, means[i], width, yerr=stds[i], color=colours[i], capsize=2, label=name)
        for xi, m, s, sig in zip(at, means[i], stds[i], significant[i]):
            ax.text(xi, min(m + s, 1.0) + 0.02, "*" if sig else "n.s.", ha="center", va="bottom",
                    fontsize=11 if sig else 7)
    at = x - 0.4 + width * (groups - 0.5)
    ax.bar(at, random_means, width, yerr=random_stds, color=RANDOM, capsize=2, label="random")
    ax.set_xticks(x, list(layers), fontsize=9)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("TCAV score")
    ax.axhline(0.5, color="#666", lw=0.6, ls=":")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())  # type: ignore[attr-defined]


def summary_page(title: str, meta: str, header: list[str], rows: list[list[str]], notes: Sequence[str],
                 picture: Image.Image | None = None, alt: str = "") -> str:
    """A self-contained HTML page: a picture (inline), a table and notes on how to read them."""
    shown = (f"<img alt='{escape(alt)}' style='max-width:100%' src='{data_uri(picture, max_side=4096)}'>"
             if picture is not None else "")
    said = "".join(f"<p>{escape(n)}</p>" for n in notes)
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1><div class='meta'>{escape(meta)}</div>{shown}"
            f"{_table(header, rows)}<div class='notes'>{said}</div></body></html>")


def dissection_chart(units: Sequence[int], ious: np.ndarray, labels: Sequence[str], chance: np.ndarray,
                     concepts: Sequence[str], title: str = "") -> Image.Image:
    """Horizontal bars: each shown unit's best IoU, coloured by its concept, a tick at chance."""
    colours = class_colors(max(len(concepts), 1))
    fig = Figure(figsize=(5.6, 0.9 + 0.26 * max(len(units), 1)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(units))[::-1]
    ax.barh(y, ious, color=[colours[list(concepts).index(label)] for label in labels])
    ax.scatter(chance, y, marker="|", color="black", s=60, label="chance IoU", zorder=3)
    ax.set_yticks(y, [f"unit {u}: {label}" for u, label in zip(units, labels)], fontsize=8)
    ax.set_xlabel("IoU with the unit's best concept")
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())  # type: ignore[attr-defined]
