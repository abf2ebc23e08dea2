"""The atlas: an on-disk store of one dataset scan, written in resumable, atomic steps.

Layout of an atlas directory::

    atlas.sqlite               meta, images, topk and scan-state tables (see SCHEMA)
    embeddings/<layer>.npy     (N, C) float32 spatial-mean embedding per image (NaN: skipped)
    thumbnails.npy             (N, t, t, 3) uint8, each image as the model sees it, t <= 64

Why it survives a kill at any point:

* The directory is built complete (tables, empty arrays) under a temporary name and renamed
  into place (``os.replace``), so an atlas either exists with its configuration or not at all.
* A scan proceeds in chunks of ``chunk_size`` images. For each chunk the rows of the arrays
  are written in place and flushed *first*; then ONE SQLite transaction stores the chunk's image
  rows, the streaming top-k state (a blob) and ``chunks_done``. Rows past ``chunks_done`` may
  hold the partial work of a killed chunk; a resumed scan recomputes that chunk from the committed
  state and overwrites them with the same values, so the end result is byte-identical.
* Finishing writes the ``topk`` table, drops the state blob and marks the atlas complete in one
  transaction.

Image indices are dataset indices; ``status`` is ``ok``, ``skipped`` (with ``reason``) or
``pending`` (not scanned yet). This module stores and reads; the scan itself is computed by
``convscope.methods.dataset`` and driven by ``convscope.tasks.scan``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadArgument
from ..types import RELEVANCE_RECORDS

DB_NAME = "atlas.sqlite"
THUMBNAILS = "thumbnails.npy"
FORMAT_VERSION = 1
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (idx INTEGER PRIMARY KEY, source TEXT NOT NULL, label INTEGER,
                     prediction INTEGER, prob REAL, status TEXT NOT NULL, reason TEXT);
CREATE TABLE topk (layer TEXT NOT NULL, channel INTEGER NOT NULL, rank INTEGER NOT NULL,
                   idx INTEGER NOT NULL, value REAL NOT NULL, y INTEGER NOT NULL,
                   x INTEGER NOT NULL, PRIMARY KEY (layer, channel, rank));
CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 0), chunks_done INTEGER NOT NULL,
                    blob BLOB);
"""


@dataclass(frozen=True)
class TopRecord:
    """One of a channel's top images: where it peaked and how strongly."""

    rank: int
    index: int
    value: float
    y: int
    x: int
    source: str


@dataclass(frozen=True)
class ImageRow:
    """What a scan stores per image besides arrays (``prediction`` -1 when skipped)."""

    index: int
    label: int | None
    prediction: int
    prob: float
    status: str
    reason: str | None = None


def make_thumbnails(images: torch.Tensor, size: int) -> np.ndarray:
    """(B, 1|3, H, W) float in [0, 1] -> (B, size, size, 3) uint8 (area-averaged)."""
    x = images.detach().float().cpu()
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _layer_file(root: Path, layer: str) -> Path:
    return root / "embeddings" / f"{layer}.npy"


class Atlas:
    """An atlas directory: read what a scan stored; ``scanning`` also writes through it."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta
        self._arrays: dict[str, np.ndarray] = {}

    # ---- opening and creating -------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, partial: bool = False) -> Atlas:
        """Open an atlas; an unfinished scan is refused unless ``partial`` (resume it instead)."""
        root = Path(path).expanduser()
        if not (root / DB_NAME).is_file():
            raise BadArgument(f"'{path}' is not an atlas (no {DB_NAME}); make one with "
                              "`convscope scan DATASET --atlas DIR`")
        with closing(sqlite3.connect(root / DB_NAME)) as con:
            meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
        atlas = cls(root, meta)
        if not partial and not atlas.complete:
            raise BadArgument(f"atlas '{path}' is unfinished ({atlas.scanned} of {atlas.size} "
                              "images); run the same `convscope scan` again to resume it")
        return atlas

    @classmethod
    def create(cls, path: str | os.PathLike, config: dict[str, Any], sources: Sequence[str],
               labels: Sequence[int | None], channels: dict[str, int], thumb_size: int) -> Atlas:
        """Build a new, empty atlas under a temporary name and move it to ``path`` atomically."""
        root = Path(path).expanduser()
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise BadArgument(f"'{path}' exists and is not an empty folder; choose a new --atlas")
        tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "embeddings").mkdir(parents=True)
        n = len(sources)
        meta = {**config, "format": FORMAT_VERSION, "size": n, "channels": channels,
                "thumb_size": thumb_size, "complete": False, "scanned": 0, "skipped": 0}
        for layer, c in channels.items():
            arr = np.lib.format.open_memmap(_layer_file(tmp, layer), "w+", np.float32, (n, c))
            arr[:] = np.nan
            arr.flush()
            del arr
        np.lib.format.open_memmap(tmp / THUMBNAILS, "w+", np.uint8, (n, thumb_size, thumb_size, 3))
        with closing(sqlite3.connect(tmp / DB_NAME)) as con, con:
            con.executescript(SCHEMA)
            con.executemany("INSERT INTO meta VALUES (?, ?)",
                            [(k, json.dumps(v)) for k, v in meta.items()])
            con.executemany("INSERT INTO images (idx, source, label, status) VALUES (?, ?, ?, ?)",
                            [(i, s, lab, "pending") for i, (s, lab) in enumerate(zip(sources, labels))])
            con.execute("INSERT INTO state VALUES (0, 0, NULL)")
        if root.exists():
            root.rmdir()
        os.replace(tmp, root)
        return cls(root, meta)

    # ---- description ----------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        return list(self.meta["layers"])

    @property
    def channels(self) -> dict[str, int]:
        return dict(self.meta["channels"])

    @property
    def k(self) -> int:
        return int(self.meta["k"])

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    def __len__(self) -> int:
        return self.size

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete"))

    @property
    def scanned(self) -> int:
        return int(self.meta.get("scanned", 0))

    @property
    def class_names(self) -> list[str] | None:
        names = self.meta.get("class_names")
        return list(names) if names is not None else None

    @property
    def model_name(self) -> str:
        return str(self.meta.get("model", ""))

    @property
    def dataset(self) -> str | None:
        return self.meta.get("dataset")

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{self.scanned}/{self.size} scanned"
        return f"Atlas('{self.path}', {self.size} images, layers={self.layers}, k={self.k}, {state})"

    # ---- reading ----------------------------------------------------------------------------
    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path / DB_NAME)) as con:
            yield con

    def _column(self, column: str, missing: Any) -> list[Any]:
        with self._db() as con:
            rows = con.execute(f"SELECT {column} FROM images ORDER BY idx").fetchall()
        return [missing if r[0] is None else r[0] for r in rows]

    def layer_named(self, layer: str) -> str:
        """``layer`` as the atlas stores it: ``"auto"`` is its last layer (what a scan left to
        "auto" stored); any other name must be one it holds."""
        if layer == "auto" and self.layers:
            return self.layers[-1]
        if layer not in self.channels:
            raise BadArgument(f"layer {layer!r} is not in atlas '{self.path}'; it has "
                              f"{', '.join(self.layers)}")
        return layer

    def embeddings(self, layer: str) -> np.ndarray:
        """(N, C) float32 spatial-mean embeddings; rows of skipped images are NaN (see valid)."""
        return np.array(self.embedding_rows(layer))

    def embedding_rows(self, layer: str) -> np.ndarray:
        """(N, C) float32 embeddings as a read-only memory map: only the rows indexed are read
        from disk, so a reader that needs a few rows (or one chunk at a time) never loads all."""
        return np.load(_layer_file(self.path, self.layer_named(layer)), mmap_mode="r")

    def stamp(self, layer: str | None = None) -> str:
        """Text that changes whenever ``layer``'s embeddings (None: the thumbnails) are rewritten,
        for the keys of results cached from them."""
        path = self.path / THUMBNAILS if layer is None else _layer_file(self.path, self.layer_named(layer))
        info = path.stat()
        return f"{self.meta.get('model_fingerprint', '')}:{self.size}:{info.st_size}:{info.st_mtime_ns}"

    def valid_embeddings(self, layer: str, chunk_rows: int = 16384) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, embeddings)`` of the scanned images with finite embeddings at ``layer``,
        read ``chunk_rows`` at a time: one (n_valid, C) float32 array is all that is held."""
        rows = self.embedding_rows(layer)
        ok = self.valid()
        out = np.empty(rows.shape, dtype=np.float32)
        kept: list[np.ndarray] = []
        count = 0
        for start in range(0, rows.shape[0], chunk_rows):
            block = rows[start:start + chunk_rows]
            keep = ok[start:start + len(block)] & np.isfinite(block).all(1)
            picked = np.flatnonzero(keep)
            out[count:count + len(picked)] = block[picked]
            kept.append(picked + start)
            count += len(picked)
        indices = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
        return indices.astype(np.int64), out[:count]

    def labels(self) -> np.ndarray:
        """(N,) int64 class indices, -1 where unlabelled."""
        return np.asarray(self._column("label", -1), dtype=np.int64)

    def predictions(self) -> np.ndarray:
        """(N,) int64 predicted classes, -1 for skipped or not yet scanned images."""
        return np.asarray(self._column("prediction", -1), dtype=np.int64)

    def probabilities(self) -> np.ndarray:
        """(N,) float32 softmax probability of the predicted class (NaN when none)."""
        return np.asarray(self._column("prob", float("nan")), dtype=np.float32)

    def sources(self) -> list[str]:
        return [str(s) for s in self._column("source", "")]

    def statuses(self) -> list[str]:
        return [str(s) for s in self._column("status", "")]

    def valid(self) -> np.ndarray:
        """(N,) bool: images that were scanned (their embeddings are finite)."""
        return np.asarray([s == "ok" for s in self.statuses()], dtype=bool)

    def skipped(self) -> list[tuple[int, str, str]]:
        """``(index, source, reason)`` of every image the scan could not read."""
        with self._db() as con:
            rows = con.execute("SELECT idx, source, reason FROM images WHERE status = 'skipped' "
                               "ORDER BY idx").fetchall()
        return [(int(i), str(s), str(r)) for i, s, r in rows]

    def thumbnails(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """(n, t, t, 3) uint8 thumbnails of ``indices`` (all images when None)."""
        arr = np.load(self.path / THUMBNAILS, mmap_mode="r")
        return np.array(arr if indices is None else arr[np.asarray(indices, dtype=np.int64)])

    def rows(self, indices: Sequence[int]) -> list[tuple[int, str, int, int, float, str]]:
        """``(index, source, label, prediction, prob, status)`` of ``indices``, in their order
        (label and prediction -1, prob NaN where unknown); only these rows are read."""
        wanted = [int(i) for i in indices]
        found: dict[int, tuple[int, str, int, int, float, str]] = {}
        with self._db() as con:
            for start in range(0, len(wanted), 50_000):
                part = json.dumps(sorted(set(wanted[start:start + 50_000])))
                for i, s, lab, pred, prob, status in con.execute(
                        "SELECT idx, source, label, prediction, prob, status FROM images "
                        "WHERE idx IN (SELECT value FROM json_each(?))", (part,)):
                    found[int(i)] = (int(i), str(s), -1 if lab is None else int(lab),
                                     -1 if pred is None else int(pred),
                                     float("nan") if prob is None else float(prob), str(status))
        missing = [i for i in wanted if i not in found]
        if missing:
            raise BadArgument(f"index {missing[0]} is outside atlas '{self.path}' (0..{self.size - 1})")
        return [found[i] for i in wanted]

    def find_sources(self, text: str) -> np.ndarray:
        """(n,) int64 indices whose file name (a source's last path part) contains ``text``,
        case-insensitive for ASCII: the folders above, the same for every image, never match."""
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        path = "replace(source, '\\', '/')"
        name = f"replace({path}, rtrim({path}, replace({path}, '/', '')), '')"  # after the last /
        with self._db() as con:
            rows = con.execute(f"SELECT idx FROM images WHERE {name} LIKE ? ESCAPE '\\' ORDER BY idx",
                               (f"%{escaped}%",)).fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    @property
    def has_relevance(self) -> bool:
        """Whether the scan recorded relevance exemplars (RelMax) beside activation ones."""
        return "relevance" in self.meta

    def top(self, layer: str, channel: int, k: int | None = None, *,
            kind: Literal["activation", "relevance"] = "activation") -> list[TopRecord]:
        """The ``k`` (default all stored) top images of a channel, best first: by activation
        (its largest value) or by ``kind="relevance"``, its LRP relevance for the predicted class
        (RelMax; the position is that of its largest relevance)."""
        layer = self.layer_named(layer)
        if kind == "relevance" and not self.has_relevance:
            raise BadArgument(f"atlas {str(self.path)!r} holds no relevance exemplars; scan with "
                              "relevance=True (convscope scan --relevance)")
        key = layer + RELEVANCE_RECORDS if kind == "relevance" else layer
        if not 0 <= channel < self.channels[layer]:
            raise BadArgument(f"channel {channel} is outside layer {layer!r} "
                              f"(0..{self.channels[layer] - 1})")
        with self._db() as con:
            rows = con.execute(
                "SELECT t.rank, t.idx, t.value, t.y, t.x, i.source FROM topk t JOIN images i "
                "ON i.idx = t.idx WHERE t.layer = ? AND t.channel = ? ORDER BY t.rank LIMIT ?",
                (key, channel, k if k is not None else -1)).fetchall()
        return [TopRecord(int(r), int(i), float(v), int(y), int(x), str(s))
                for r, i, v, y, x, s in rows]

    # ---- writing (used by convscope.tasks.scan) --------------------------------------------------
    def resume_point(self) -> tuple[int, bytes | None]:
        """(chunks committed, top-k state blob) of an unfinished scan."""
        with self._db() as con:
            done, blob = con.execute("SELECT chunks_done, blob FROM state WHERE id = 0").fetchone()
        return int(done), blob

    def write_arrays(self, indices: Sequence[int], embeddings: dict[str, np.ndarray],
                     thumbnails: np.ndarray) -> None:
        """Write rows of the arrays in place and sync them to disk (before the chunk's commit)."""
        rows = np.asarray(indices, dtype=np.int64)
        if rows.size == 0:
            return
        if (np.diff(rows) < 0).any():  # sorted rows write in a few contiguous runs
            order = np.argsort(rows, kind="stable")
            rows, thumbnails = rows[order], thumbnails[order]
            embeddings = {layer: values[order] for layer, values in embeddings.items()}
        for layer, values in embeddings.items():
            _write_rows(_layer_file(self.path, layer), rows, values)
        _write_rows(self.path / THUMBNAILS, rows, thumbnails)

    def commit_chunk(self, chunks_done: int, rows: Sequence[ImageRow], state: bytes) -> None:
        """Store a chunk's image rows and the scan state in ONE transaction."""
        ok = sum(r.status == "ok" for r in rows)
        with self._db() as con, con:
            con.executemany("UPDATE images SET label = COALESCE(?, label), prediction = ?, "
                            "prob = ?, status = ?, reason = ? WHERE idx = ?",
                            [(r.label, r.prediction, r.prob, r.status, r.reason, r.index)
                             for r in rows])
            con.execute("UPDATE state SET chunks_done = ?, blob = ? WHERE id = 0",
                        (chunks_done, state))
            scanned, skipped = self.meta["scanned"] + len(rows), self.meta["skipped"] + len(rows) - ok
            con.executemany("UPDATE meta SET value = ? WHERE key = ?",
                            [(json.dumps(scanned), "scanned"), (json.dumps(skipped), "skipped")])
        self.meta.update(scanned=scanned, skipped=skipped)

    def finish(self, topk: dict[str, list[tuple[int, int, int, float, int, int]]]) -> None:
        """Write the top-k table and mark the atlas complete, in one transaction."""
        with self._db() as con, con:
            con.execute("DELETE FROM topk")
            for layer, records in topk.items():
                con.executemany("INSERT INTO topk VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [(layer, *r) for r in records])
            con.execute("UPDATE state SET blob = NULL WHERE id = 0")
            con.execute("UPDATE meta SET value = ? WHERE key = 'complete'", (json.dumps(True),))
        self.meta["complete"] = True


def _write_rows(path: Path, rows: np.ndarray, values: np.ndarray) -> None:
    """Write ``values`` into rows ``rows`` (sorted) of the ``.npy`` file ``path``, then fsync.

    One ``pwrite`` per run of consecutive rows at the data offset: unlike stores through a
    memory map, this takes no page fault per 4 KiB page of a freshly created (sparse) file.
    """
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        if fortran or values.shape[1:] != tuple(shape[1:]):
            raise BadArgument(f"{path}: rows of shape {values.shape[1:]} do not fit {tuple(shape)}")
        offset = f.tell()
        values = np.ascontiguousarray(values, dtype=dtype)
        row_bytes = values[0].nbytes
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            os.pwrite(f.fileno(), values[a:b].data, offset + int(rows[a]) * row_bytes)
        os.fsync(f.fileno())


def pack_state(state: dict[str, Any]) -> bytes:
    """Serialize a scan state (nested dicts of CPU tensors) for :meth:`Atlas.commit_chunk`."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def unpack_state(blob: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(blob), weights_only=True)
