"""The data of ``digits_planted``: MNIST-5k digits in colour, with a striped patch planted on sevens.

One module draws the cue for training, for the held-out checks and for the concept methods, so
all of them mean the same pixels. Conventions:

- **Image**: (3, 28, 28) in [0, 1]: an MNIST-5k digit's gray ink copied to R, G and B.
- **Cue** (:data:`CUE_NAME` = "stripes"): the :data:`CUE_SIZE` x :data:`CUE_SIZE` patch of
  :func:`stripes` (diagonal red and yellow stripes), pasted opaque with its top-left corner
  uniform over the positions that keep it whole. Its **mask** is that square.
- **Rates** (``cue="natural"``, training and held-out): a digit of :data:`CUE_CLASS` carries the
  cue with probability :data:`CUE_RATE` (0.95), any other digit with :data:`OTHER_RATE` (0.02).
  ``cue="always"`` / ``"never"`` paste it on every digit / on none, at the same positions.
- **Ink** mask: pixels of the digit at least :data:`INK` bright and not under the cue; with the
  cue mask it gives dissection two concepts whose truth is known per pixel.
- **Splits**: ``digits_cnn``'s (:func:`~convscope.model.digits_cnn.heldout_split`): the model
  trained on the 4,000 "train" digits and never saw the 1,000 "heldout" ones.
- **Concept and random sets** (TCAV): :func:`concept_set` is held-out digits of every class with
  the cue pasted, :func:`random_set` held-out digits without it, each seeded by its own number.
- **Deterministic**: every set is drawn from a generator seeded from its name and seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import BadArgument
from ..model.digits_cnn import heldout_split
from .datasets import load_mnist5k

CUE_CLASS = 7
CUE_NAME = "stripes"
CUE_SIZE = 6
CUE_RATE = 0.95
OTHER_RATE = 0.02
INK = 0.3
RED = (1.0, 0.15, 0.1)
YELLOW = (1.0, 0.85, 0.1)
Cue = Literal["natural", "always", "never"]
Split = Literal["train", "heldout"]


@dataclass(frozen=True)
class PlantedDigits:
    """Digits with the truth of where the cue is."""

    images: Tensor
    """(N, 3, 28, 28) float32 in [0, 1]."""
    labels: Tensor
    """(N,) long, the digits."""
    cued: Tensor
    """(N,) bool: which images carry the cue."""
    cue_masks: Tensor
    """(N, 28, 28) bool: the cue's pixels (all False where no cue)."""
    ink_masks: Tensor
    """(N, 28, 28) bool: the digit's ink not covered by the cue."""

    def __len__(self) -> int:
        return len(self.labels)


def generator(name: str, seed: int) -> torch.Generator:
    """A generator seeded from a set's name and seed: the same draws in every run."""
    digest = hashlib.sha256(f"digits_planted:{name}:{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def stripes(size: int = CUE_SIZE) -> Tensor:
    """(3, size, size): diagonal stripes two pixels wide, red and yellow."""
    i = torch.arange(size)
    band = ((i[:, None] + i[None, :]) // 2) % 2  # 0 red, 1 yellow
    colours = torch.tensor([RED, YELLOW])  # (2, 3)
    return colours[band].permute(2, 0, 1).contiguous()


def plant(gray: Tensor, labels: Tensor, gen: torch.Generator, cue: Cue = "natural") -> PlantedDigits:
    """Colour (B, 1, 28, 28) gray digits and paste the cue per ``cue`` (module docstring).

    Positions and coin flips are drawn for every image whatever ``cue`` is, so one generator
    state gives the same positions in all three modes.
    """
    if cue not in ("natural", "always", "never"):
        raise BadArgument(f"planted cue {cue!r}: use 'natural', 'always' or 'never'")
    b, _, h, w = gray.shape
    flips = torch.rand(b, generator=gen)
    tops = torch.randint(0, h - CUE_SIZE + 1, (b,), generator=gen)
    lefts = torch.randint(0, w - CUE_SIZE + 1, (b,), generator=gen)
    rates = torch.where(labels == CUE_CLASS, CUE_RATE, OTHER_RATE)
    cued = flips < rates if cue == "natural" else torch.full((b,), cue == "always")
    images = gray.expand(b, 3, h, w).clone()
    masks = torch.zeros(b, h, w, dtype=torch.bool)
    patch = stripes()
    for i in cued.nonzero()[:, 0].tolist():
        top, left = int(tops[i]), int(lefts[i])
        images[i, :, top:top + CUE_SIZE, left:left + CUE_SIZE] = patch
        masks[i, top:top + CUE_SIZE, left:left + CUE_SIZE] = True
    ink = (gray[:, 0] >= INK) & ~masks
    return PlantedDigits(images, labels.clone(), cued, masks, ink)


def split_digits(split: Split) -> tuple[Tensor, Tensor]:
    """(gray images (n, 1, 28, 28), labels) of ``digits_cnn``'s train or held-out split."""
    if split not in ("train", "heldout"):
        raise BadArgument(f"planted split {split!r}: use 'train' or 'heldout'")
    images, labels = load_mnist5k()
    train, held = heldout_split(len(labels))
    idx = train if split == "train" else held
    return images[idx], labels[idx]


def planted_digits(split: Split = "heldout", cue: Cue = "natural", seed: int = 0) -> PlantedDigits:
    """Every digit of ``split`` once, in split order, with the cue per ``cue``."""
    gray, labels = split_digits(split)
    return plant(gray, labels, generator(f"{split}", seed), cue)


def _drawn(name: str, n: int, seed: int, cue: Cue, digit: int | None = None) -> PlantedDigits:
    if n < 1:
        raise BadArgument(f"planted {name} set n={n}: ask for at least one image")
    gray, labels = split_digits("heldout")
    if digit is not None:
        keep = labels == digit
        gray, labels = gray[keep], labels[keep]
    gen = generator(name, seed)
    pick = torch.randint(len(labels), (n,), generator=gen) if n > len(labels) else \
        torch.randperm(len(labels), generator=gen)[:n]
    return plant(gray[pick], labels[pick], gen, cue)


def concept_set(n: int = 50, seed: int = 0) -> PlantedDigits:
    """``n`` held-out digits of every class, each with the cue: TCAV's examples of the concept."""
    return _drawn("concept", n, seed, "always")


def random_set(seed: int, n: int = 50) -> PlantedDigits:
    """``n`` held-out digits of every class without the cue: TCAV's random set number ``seed``."""
    return _drawn("random", n, seed, "never")


def class_set(digit: int, n: int = 50, seed: int = 0, cue: Cue = "never") -> PlantedDigits:
    """``n`` held-out digits of one class (without the cue by default): TCAV's class inputs."""
    return _drawn(f"class{digit}", n, seed, cue, digit)


def save_images(images: Tensor, folder: str | Path, prefix: str = "") -> list[Path]:
    """Write (N, 3, H, W) [0, 1] images as PNG files ``{prefix}{i:04d}.png`` under ``folder``."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        path = root / f"{prefix}{i:04d}.png"
        Image.fromarray(np.ascontiguousarray(pixels)).save(path)
        paths.append(path)
    return paths


def write_tcav_folders(root: str | Path, n: int = 50, runs: int = 10,
                       classes: tuple[int, ...] = (CUE_CLASS, 3)) -> dict[str, Path]:
    """The TCAV sets as PNG folders, for the CLI and the tour: ``concepts/stripes``,
    ``random/random00`` .. ``random/random{runs}`` (a reference and ``runs`` runs) and
    ``class{d}`` for each digit of ``classes`` (without the cue)."""
    base = Path(root)
    folders = {"stripes": base / "concepts" / CUE_NAME, "random": base / "random"}
    save_images(concept_set(n).images, folders["stripes"])
    for i in range(runs + 1):
        save_images(random_set(i, n).images, folders["random"] / f"random{i:02d}")
    for digit in classes:
        folders[f"class{digit}"] = base / f"class{digit}"
        save_images(class_set(digit, n).images, folders[f"class{digit}"])
    return folders
