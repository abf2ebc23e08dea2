"""Image references: the one way a URL names an image, and the only code that reads them.

A reference is text that fits in a query string and means the same after a restart:

- ``sample:NAME``                     a bundled sample photo;
- ``folder:<folder id>/<rel path>``   a file inside one of the ``--images`` folders (the folder id
  is the folder's name); absolute paths, ``..`` and links that leave the folder are refused;
- ``upload:<sha256>``                 an uploaded file, stored in the cache by its content hash;
- ``atlas:<atlas id>/<index>``        image ``index`` of an open atlas.

Every image goes through :func:`convscope.data.images.load_image`, so the web refuses exactly
what the CLI refuses. Decoded images are kept (``AppState.decoded``) under a key that changes with
their content; the tensors handed out are shared: callers must not modify them in place.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from torch import Tensor

from ..data.folders import IMAGE_SUFFIXES
from ..data.images import load_file_bytes, load_image
from ..data.samples import list_samples
from ..errors import BadArgument
from ..tasks.atlas import atlas_image
from .cache import write_atomic
from .errors import Forbidden, NotFound, TooLarge

if TYPE_CHECKING:
    from .state import AppState

_HEX = re.compile(r"^[0-9a-f]{64}$")
_LIST_LIMIT = 2000


@dataclass(frozen=True)
class ImageChoice:
    ref: str
    name: str
    group: str


def unique_name(text: str, taken: Iterable[str], fallback: str) -> str:
    """``text`` made safe for a URL (``fallback`` when nothing is left), then unique among
    ``taken`` with -2, -3 ..."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", text) or fallback
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def folder_ids(folders: list[Path]) -> dict[str, Path]:
    ids: dict[str, Path] = {}
    for folder in folders:
        ids[unique_name(folder.resolve().name, ids, "images")] = folder.resolve()
    return ids


def inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative`` when it stays inside ``root`` (links resolved); else :class:`Forbidden`."""
    rel = PurePosixPath(relative.replace("\\", "/"))
    if relative.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", relative) or rel.is_absolute():
        raise Forbidden(f"{what} {relative!r}: absolute paths are refused; give a path inside the folder")
    if any(part == ".." for part in rel.parts):
        raise Forbidden(f"{what} {relative!r}: '..' is refused; give a path inside the folder")
    path = (root / rel).resolve()
    if path != root and root not in path.parents:
        raise Forbidden(f"{what} {relative!r} leads outside the served folder")
    return path


def folder_file(state: AppState, ref: str, what: str, suffix: str | None = None) -> Path:
    """The file ``folder:<folder id>/<rel path>`` names inside an ``--images`` folder (with
    ``suffix``, only such a file); nothing outside the folder is ever named."""
    folder_id, _, relative = ref.partition(":")[2].partition("/")
    root = state.image_folders.get(folder_id)
    if root is None:
        raise NotFound(f"{what} {ref!r}: no image folder {folder_id!r}; folders: "
                       f"{', '.join(state.image_folders) or 'none (start with --images DIR)'}")
    path = inside(root, relative, what)
    if not path.is_file() or (suffix is not None and path.suffix != suffix):
        kind = f"{suffix} file" if suffix else "file"
        raise NotFound(f"{what} {ref!r}: no such {kind} in folder {folder_id!r}")
    return path


def resolve_image(state: AppState, ref: str) -> Tensor:
    kind, sep, rest = (ref or "").partition(":")
    if not sep:
        raise BadArgument(f"image {ref!r} is not an image reference; use sample:NAME, "
                          "folder:FOLDER/FILE, upload:HASH or atlas:ATLAS/INDEX")
    limit = state.config.max_pixels
    if kind == "sample":
        if rest not in list_samples():
            raise NotFound(f"image {ref!r}: no sample {rest!r}; samples: {', '.join(list_samples())}")
        return state.decoded.get(("sample", rest), lambda: load_image(ref))
    if kind == "folder":
        path = folder_file(state, ref, "image")
        stat = path.stat()  # a file changed in place gets a new key: its size or mtime moved
        key = ("folder", str(path), stat.st_size, stat.st_mtime_ns, limit)
        return state.decoded.get(key, lambda: load_image(path, max_pixels=limit))
    if kind == "upload":
        if not _HEX.match(rest):
            raise BadArgument(f"image {ref!r}: an upload reference is upload: and 64 hex digits")
        path = state.cache.blob_path("uploads", rest)
        if not path.is_file():
            raise NotFound(f"image {ref!r}: no such upload (uploads live in the server's cache); "
                           "upload it again")
        return state.decoded.get(("upload", rest, limit),
                                 lambda: load_image(path.read_bytes(), max_pixels=limit))
    if kind == "atlas":
        atlas_id, _, index = rest.partition("/")
        atlas = state.atlas(atlas_id)
        if not index.isdigit():
            raise BadArgument(f"image {ref!r}: the index after the atlas id must be a whole number")
        return atlas_image(atlas, int(index))
    raise BadArgument(f"image {ref!r}: unknown kind {kind!r}; use sample:, folder:, upload: or atlas:")


def save_upload(state: AppState, data: bytes, filename: str = "upload") -> str:
    """Check an uploaded file (the CLI's checks and words) and store it; return its
    ``upload:<sha256>`` reference."""
    if len(data) > state.config.max_upload_bytes:
        raise TooLarge(f"{filename!r} is {len(data)} bytes; the upload limit is "
                       f"{state.config.max_upload_bytes} bytes")
    load_file_bytes(data, filename or "upload", max_pixels=state.config.max_pixels)
    digest = hashlib.sha256(data).hexdigest()
    path = state.cache.blob_path("uploads", digest)
    if not path.exists():
        write_atomic(path, data)
    return f"upload:{digest}"


def list_images(state: AppState) -> list[ImageChoice]:
    """Samples, then the files of each ``--images`` folder (sorted; at most a few thousand)."""
    choices = [ImageChoice(f"sample:{name}", name, "samples") for name in list_samples()]
    for folder_id, root in state.image_folders.items():
        found = 0
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                try:
                    rel = inside(root, path.relative_to(root).as_posix(), "image")
                except Forbidden:
                    continue
                choices.append(ImageChoice(f"folder:{folder_id}/{rel.relative_to(root).as_posix()}",
                                           path.relative_to(root).as_posix(), folder_id))
                found += 1
                if found >= _LIST_LIMIT:
                    break
    return choices
