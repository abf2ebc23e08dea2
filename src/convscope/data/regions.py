"""Object boxes and masks of a dataset's images, from one CSV file (localization metrics need them).

The format, one row per image, with a header row::

    image,top,left,bottom,right,mask
    cats/tabby.jpg,40,120,260,380,
    dogs/pug.png,,,,,masks/pug.png

- ``image`` names a dataset item: its path relative to the dataset folder, its full source
  (``mnist5k:12``, ``sample:cat``, an absolute path), or its bare file name when that is unique.
- ``top,left,bottom,right``: the object's box in pixels of the ORIGINAL image (bottom and right
  exclusive, like slicing), as ``convscope evaluate --box`` takes it.
- ``mask``: an image file the size of the photo (a path relative to the CSV file), whose
  non-zero pixels are the object. A row gives a box, a mask, or both (the mask then wins).

Columns that a file does not use may be left out (``image,mask`` or ``image,top,left,bottom,right``).
Both are moved into the model's input by the same crop or letterbox as the photo.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import BadArgument
from .images import load_image

BOX_COLUMNS = ("top", "left", "bottom", "right")


@dataclass(frozen=True)
class Region:
    """One image's object: a box in original pixels, a mask file, or both."""

    box: tuple[float, float, float, float] | None = None
    mask: Path | None = None

    def mask_image(self) -> torch.Tensor | None:
        """(1, H, W) float, 1 on the object, in original pixels; None without a mask file."""
        if self.mask is None:
            return None
        pixels = load_image(self.mask)
        return (pixels.amax(0, keepdim=True) > 0).float()


def read_regions(path: str | os.PathLike, sources: list[str], root: Path | None = None
                 ) -> dict[int, Region]:
    """Dataset index -> region, for every row of the CSV file ``path`` (format above).

    ``sources`` are the dataset's items (``ImageDataset.sources()``), ``root`` its folder (for
    relative names). A row that names no item, or gives neither a box nor a mask, is refused in
    one line naming the row.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise BadArgument(f"regions file '{path}' does not exist; give a CSV with a header "
                          "image,top,left,bottom,right (or image,mask)")
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        has_box = set(BOX_COLUMNS) <= columns
        if "image" not in columns or not (has_box or "mask" in columns):
            raise BadArgument(f"regions file '{path}' needs the columns image and top,left,bottom,right "
                              f"or mask; it has {', '.join(sorted(columns)) or 'none'}")
        lookup = _names(sources, root)
        regions: dict[int, Region] = {}
        for line, row in enumerate(reader, start=2):
            where = f"regions file '{path}', line {line}"
            name = (row.get("image") or "").strip()
            index = lookup.get(name)
            if index is None:
                raise BadArgument(f"{where}: image {name!r} is not in the dataset; name it by its path "
                                  "relative to the dataset folder or by its source")
            box = _box(row, where) if has_box else None
            mask_text = (row.get("mask") or "").strip()
            mask = file.parent / mask_text if mask_text else None
            if box is None and mask is None:
                raise BadArgument(f"{where}: give the box (top,left,bottom,right) or a mask file")
            regions[index] = Region(box, mask)
    return regions


def _box(row: dict[str, str | None], where: str) -> tuple[float, float, float, float] | None:
    cells = [(row.get(c) or "").strip() for c in BOX_COLUMNS]
    if not any(cells):
        return None
    try:
        top, left, bottom, right = (float(c) for c in cells)
    except ValueError:
        raise BadArgument(f"{where}: the box {cells} needs four numbers top,left,bottom,right") from None
    return top, left, bottom, right


def _names(sources: list[str], root: Path | None) -> dict[str, int]:
    """Every name a row may use for an item: its source, its path relative to ``root``, and
    its file name when no other item shares it."""
    names: dict[str, int] = {}
    counts: dict[str, int] = {}
    for source in sources:
        counts[Path(source).name] = counts.get(Path(source).name, 0) + 1
    for index, source in enumerate(sources):
        names[source] = index
        path = Path(source)
        if root is not None and path.is_absolute() and path.is_relative_to(root):
            names[path.relative_to(root).as_posix()] = index
        if counts[path.name] == 1:
            names.setdefault(path.name, index)
    return names
