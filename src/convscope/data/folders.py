"""Every image in a folder: listing by file name, then loading each with :func:`load_image`.

Listing goes by suffix (cheap, no file opened), in name order so a batch is reproducible.
Files with other suffixes are skipped with one warning that names them: a stray ``labels.csv``
is normal in an image folder, but silently dropping ``photo.heic`` would surprise. Hidden files
(``.DS_Store``, macOS ``._photo.jpg`` resource forks that carry an image suffix but no image) and
hidden folders are skipped silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from PIL import features

from ..errors import BadArgument, BadImage, warn
from .images import load_image

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".tif", ".tiff",
     ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".qoi"}
    | ({".avif"} if features.check("avif") else set())
)
"""Suffixes (lower case) that :func:`image_files` treats as images; all decode with Pillow."""

_NAMES_SHOWN = 5


def image_files(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (with ``recursive``, its subfolders too), sorted by path.

    Warns once about files skipped for their suffix; raises :class:`BadImage` when the folder is
    missing, not a folder, or holds no image file.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise BadImage(f"image folder '{folder}' does not exist; check the path")
    if not root.is_dir():
        raise BadImage(f"'{folder}' is a file, not a folder; use load_image() for one image")
    images, skipped = _scan(root, recursive)
    if skipped:
        shown = ", ".join(str(p.relative_to(root)) for p in skipped[:_NAMES_SHOWN])
        more = f" and {len(skipped) - _NAMES_SHOWN} more" if len(skipped) > _NAMES_SHOWN else ""
        warn(f"skipped {len(skipped)} non-image file(s) in '{folder}': {shown}{more}",
             UserWarning)
    if not images:
        where = " or its subfolders" if recursive else ""
        hint = "" if recursive else " (pass recursive=True to look in subfolders)"
        raise BadImage(f"image folder '{folder}'{where} holds no image files{hint}; expected "
                       f"one of {', '.join(sorted(IMAGE_SUFFIXES))}")
    return images


def load_folder(
    folder: str | os.PathLike,
    *,
    recursive: bool = False,
    on_error: Literal["raise", "skip"] = "raise",
    max_pixels: int | None = None,
) -> list[tuple[Path, torch.Tensor]]:
    """Load every image in ``folder`` as ``(path, (3, H, W) tensor)`` pairs, sorted by path.

    Images keep their own sizes (``Model.preprocess`` resizes them into one batch).
    ``on_error="raise"`` stops at the first unreadable image with its :class:`BadImage`;
    ``"skip"`` leaves such files out and warns once naming them.
    """
    if on_error not in ("raise", "skip"):
        raise BadArgument(f"on_error={on_error!r}: use 'raise' or 'skip'")
    loaded: list[tuple[Path, torch.Tensor]] = []
    failed: list[str] = []
    for path in image_files(folder, recursive=recursive):
        try:
            loaded.append((path, load_image(path, max_pixels=max_pixels)))
        except BadImage as err:
            if on_error == "raise":
                raise
            failed.append(f"{path.name} ({err})")
    if failed:
        warn(f"skipped {len(failed)} unreadable image(s) in '{folder}': "
             + "; ".join(failed[:_NAMES_SHOWN]), UserWarning)
    if not loaded:
        raise BadImage(f"no image in folder '{folder}' could be read; see the warning above")
    return loaded


def _scan(root: Path, recursive: bool) -> tuple[list[Path], list[Path]]:
    """(image files, other visible files) under root, each sorted by relative path."""
    images: list[Path] = []
    others: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for filename in filenames:
            path = Path(dirpath) / filename
            if filename.startswith(".") or not path.is_file():
                continue
            (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    return sorted(images), sorted(others)


def load_labelled_folder(
    folder: str | os.PathLike, *, on_error: Literal["raise", "skip"] = "raise"
) -> tuple[list[torch.Tensor], torch.Tensor, list[str], list[Path]]:
    """A class-per-subfolder image folder: (images, labels (N,), class names, paths).

    Class names are the subfolder names in sorted order; ``labels`` index into them.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise BadImage(f"labelled image folder '{folder}' does not exist or is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise BadImage(f"'{folder}' has no class subfolders; put each class's images in "
                       "a subfolder named after the class")
    images: list[torch.Tensor] = []
    labels: list[int] = []
    paths: list[Path] = []
    for index, name in enumerate(classes):
        for path, image in load_folder(root / name, on_error=on_error):
            images.append(image)
            labels.append(index)
            paths.append(path)
    return images, torch.tensor(labels, dtype=torch.long), classes, paths
