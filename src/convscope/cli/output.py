"""Writing what a task made: the picture(s), a JSON summary next to them, one printed line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..render import save_png
from ..tasks.synthesis import Synthesis
from .common import print_json


def aligned(table: list[list[str]]) -> list[str]:
    """Rows of cells as lines, each column padded to its widest cell (a header first)."""
    widths = [max(len(row[i]) for row in table if i < len(row)) for i in range(len(table[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]


def write_synthesis(args: argparse.Namespace, out: Path, made: Synthesis) -> int:
    """Save the picture (and its extras as ``OUT_<name>.png``) and ``OUT.json``; print the
    summary (``--json``) or the headline."""
    png = save_png(made.picture, out)
    written = {"png": str(png)}
    for name, image in made.extra.items():
        path = out.with_name(f"{out.stem}_{name}.png")
        written[path.stem] = str(save_png(image, path))
    summary = {**made.summary, "files": written}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print_json(summary)
    else:
        print(f"{png}: {made.headline}")
    return 0
