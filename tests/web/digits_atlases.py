"""Small digit atlases for the neighbours, patches and compare tests (built once per module).

A folder of 40 MNIST digits (4 per class, in class subfolders) scanned by ``digits_cnn`` into
two atlases of the same dataset (``digits``: block3 and block4; ``digits_b``: block4 only) and a
third atlas of another folder (``others``: 20 other digits), so compare can refuse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from convscope.data.datasets import load_mnist5k
from convscope.model import load_model
from convscope.tasks.scan import scan_dataset

PER_CLASS = 4
NAMES = ("digits", "digits_b", "others")


@dataclass(frozen=True)
class DigitAtlases:
    root: Path
    atlases: Path
    """The folder holding the atlas folders (``digits``, ``digits_b``, ``others``)."""
    images: Path
    """A folder of query images that are not in any atlas (``q0.png`` ...)."""

    def atlas(self, name: str) -> Path:
        return self.atlases / name

    def config(self) -> dict[str, Any]:
        """``make_app`` keywords serving the three atlases and the query folder."""
        return {"atlases": [self.atlas(n) for n in NAMES], "images": [self.images]}


def _write_digits(folder: Path, images: torch.Tensor, labels: torch.Tensor, start: int,
                  per_class: int) -> None:
    for c in range(10):
        (folder / str(c)).mkdir(parents=True)
        for i in (labels == c).nonzero().view(-1)[start:start + per_class].tolist():
            pixels = (images[i, 0] * 255).round().to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / str(c) / f"d{i}.png")


def make_digit_atlases(root: Path) -> DigitAtlases:
    """Write the digit folders and scan them (about a second on one core)."""
    images, labels = load_mnist5k()
    _write_digits(root / "digits", images, labels, 0, PER_CLASS)
    _write_digits(root / "others", images, labels, PER_CLASS, 2)
    queries = root / "queries"
    queries.mkdir()
    for q, i in enumerate((4999, 4000, 123)):
        Image.fromarray((images[i, 0] * 255).round().to(torch.uint8).numpy()).save(queries / f"q{q}.png")
    model = load_model("digits_cnn")
    atlases = root / "atlases"
    scan_dataset(model, root / "digits", atlases / "digits", layers=["block3", "block4"], k=4)
    scan_dataset(model, root / "digits", atlases / "digits_b", layers=["block4"], k=4)
    scan_dataset(model, root / "others", atlases / "others", layers=["block4"], k=4)
    return DigitAtlases(root, atlases, queries)
