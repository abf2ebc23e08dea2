"""What the concept commands save: a picture, its numbers and a page, under one folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PIL import Image


def write_outputs(folder: str | os.PathLike, stem: str, picture: Image.Image, data: dict[str, Any],
                  page: str) -> dict[str, Path]:
    """Write ``{stem}.png``, ``{stem}.json`` and ``{stem}.html`` under ``folder``; their paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"{stem}.{kind}" for kind in ("png", "json", "html")}
    picture.save(paths["png"])
    paths["json"].write_text(json.dumps(data, indent=2))
    paths["html"].write_text(page)
    return paths
