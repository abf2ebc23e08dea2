"""A small real atlas for the map tests: ``scan_dataset`` of a folder of MNIST digits with
``digits_cnn`` (class subfolders give labels and file names to search), one broken file in it
so the atlas has a skipped image."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image

from convscope.data.datasets import load_mnist5k
from convscope.model import load_model
from convscope.tasks.scan import scan_dataset

LAYERS = ["block3", "flatten"]


def digits_folder(root: Path, per_class: int = 4, offset: int = 0) -> Path:
    """``root/<digit>/d<digit>_<i>.png`` for ``per_class`` MNIST images of each digit, plus
    ``root/3/broken.png`` which is not an image."""
    images, labels = load_mnist5k()
    for digit in range(10):
        folder = root / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        picks = (labels == digit).nonzero().flatten()[offset:offset + per_class]
        for i, index in enumerate(picks.tolist()):
            pixels = (images[index, 0] * 255).round().byte().numpy()
            Image.fromarray(pixels, mode="L").save(folder / f"d{digit}_{i}.png")
    (root / "3" / "broken.png").write_bytes(b"not a png")
    return root


def digits_atlas(root: Path, name: str = "digits", per_class: int = 4, offset: int = 0) -> Path:
    """Scan the digits folder into ``root/<name>`` (41 items: 40 digits, 1 skipped)."""
    folder = digits_folder(root / f"{name}-images", per_class, offset)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="scan skipped")
        scan_dataset(load_model("digits_cnn"), folder, root / name, layers=LAYERS, k=3, batch_size=16)
    return root / name
