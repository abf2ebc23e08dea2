"""Results of finished jobs on disk, keyed by what produced them, so a second visit is instant.

A key hashes the model's content key, the job kind and its settings. An entry is a folder with
``data.json`` and the job's files; it is written to a temporary folder and renamed into place, so
a reader never sees half an entry (and two servers sharing a cache do not clash).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import NotFound

_SAFE_NAME = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass
class JobResult:
    """What a job hands back: JSON-able data and named files (PNG, .npy, CSV ...)."""

    data: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def check_file_name(name: str) -> str:
    """A result file name is a plain name (no folders, no dots in front)."""
    if not name or name.startswith(".") or not set(name) <= _SAFE_NAME:
        raise NotFound(f"no file {name!r}")
    return name


def write_atomic(path: Path, blob: bytes) -> None:
    """Write a file through a unique temporary name renamed into place: a reader sees the whole
    file or none, and concurrent writers never share a temporary file."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(blob)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class DiskCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(*parts: Any) -> str:
        """A stable hash of JSON-able parts (dict order does not matter)."""
        text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def folder(self, key: str) -> Path:
        if len(key) < 3 or not set(key) <= set("0123456789abcdef"):
            raise NotFound(f"no cached result {key!r}")
        return self.root / "results" / key[:2] / key

    def get(self, key: str) -> JobResult | None:
        folder = self.folder(key)
        meta = folder / "data.json"
        if not meta.is_file():
            return None
        data = json.loads(meta.read_text())
        return JobResult(data=data["data"], files={n: b"" for n in data["files"]})

    def file(self, key: str, name: str) -> Path:
        path = self.folder(key) / "files" / check_file_name(name)
        if not path.is_file():
            raise NotFound(f"no file {name!r} in this result")
        return path

    def file_made(self, key: str, name: str, make: Callable[[], bytes]) -> Path:
        if self.get(key) is None:
            self.put(key, JobResult(files={name: make()}))
        return self.file(key, name)

    def put(self, key: str, result: JobResult) -> None:
        folder = self.folder(key)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
        try:
            (tmp / "files").mkdir()
            for name, blob in result.files.items():
                (tmp / "files" / check_file_name(name)).write_bytes(blob)
            (tmp / "data.json").write_text(json.dumps({"data": result.data, "files": sorted(result.files)}))
            with contextlib.suppress(OSError):  # another writer won the race: its entry is as good
                os.rename(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def add_file(self, key: str, name: str, blob: bytes) -> None:
        """Add a file drawn later (on its first request) to an existing entry, atomically: a
        reader sees the whole file or none (two writers write the same bytes)."""
        folder = self.folder(key) / "files"
        if not folder.is_dir():
            raise NotFound(f"no cached result {key!r}")
        write_atomic(folder / check_file_name(name), blob)

    def blob_path(self, kind: str, digest: str) -> Path:
        folder = self.root / "blobs" / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder / digest
