"""Dataset -> scan -> atlas: the driver that joins ``data`` (reading, storing) and ``methods``.

:func:`scan_dataset` walks a dataset in chunks of ``chunk_size`` images. Each chunk is loaded in
batches, scanned by :class:`~convscope.methods.dataset.scan.Scanner`, and committed to the atlas
in one transaction together with the merged top-k state (:mod:`convscope.data.atlas` explains
why this makes a killed scan resumable with an identical result). Where a core is free for them,
helper threads load one batch ahead and commit while the next chunk is computed. Under
``torchrun`` every process takes a strided share of each chunk and rank 0 merges and writes
(:mod:`.methods.dataset.distributed`).

Unreadable items (:class:`~convscope.errors.BadImage`) are skipped, recorded with their reason
and reported in one warning at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.atlas import Atlas, ImageRow, make_thumbnails, pack_state, unpack_state
from ..data.datasets import MNIST5K, ImageDataset, Mnist5k, open_dataset
from ..errors import BadArgument, check_positive, warn
from ..methods.dataset import distributed as dist
from ..methods.dataset.scan import Scanner, scan_batch_size
from ..methods.dataset.topk import TopK
from ..model import Model, list_layers
from ..model.digest import weights_digest
from ..model.layers import AFTER_RELU
from ..types import ProgressFn

DEFAULT_CHUNK = 512
"""Fewest images per committed chunk by default (a kill loses at most one chunk of work); the
default is ``max(DEFAULT_CHUNK, 8 * batch_size)`` so a commit (two fsyncs) stays rare."""
MAX_THUMB = 64


def _dataset_spec(dataset: Any) -> str | None:
    """The string that reopens a dataset (a folder, "mnist5k"), None for in-memory ones."""
    if isinstance(dataset, (str, os.PathLike)):
        text = os.fspath(dataset)
        return text if text == MNIST5K else str(Path(text).expanduser().resolve())
    if isinstance(dataset, Mnist5k):
        return MNIST5K
    root = getattr(dataset, "root", None)
    return str(root) if isinstance(root, Path) else None


def _open_or_create(path: Path, config: dict[str, Any], ds: ImageDataset, channels: dict[str, int],
                    thumb: int) -> tuple[int, bytes | None]:
    """Rank 0: a new atlas or the committed point of an unfinished one with the same config."""
    if not (path / "atlas.sqlite").is_file():
        Atlas.create(path, config, ds.sources(), _labels(ds), channels, thumb)
        return 0, None
    atlas = Atlas.open(path, partial=True)
    stored = {key: atlas.meta.get(key) for key in config}
    if stored != config:
        diff = ", ".join(f"{k}: {stored[k]!r} -> {config[k]!r}" for k in config if stored[k] != config[k])
        raise BadArgument(f"atlas '{path}' was made by a different scan ({diff}); use a new "
                          "--atlas folder (or delete this one) to start over")
    if atlas.complete:
        return -1, None
    return atlas.resume_point()


def _labels(ds: ImageDataset) -> list[int | None]:
    """Labels without decoding images when the dataset keeps them (folders, MNIST-5k)."""
    labels = getattr(ds, "labels", None)
    if labels is not None and len(labels) == len(ds):
        return [None if v is None else int(v) for v in labels]
    return [None] * len(ds)


@dataclass
class _Loaded:
    """One batch as the loader thread prepares it: model inputs, thumbnails, unreadable items."""

    ok: list[tuple[int, int | None]]
    """(index, label) of the readable items, in order."""
    inputs: torch.Tensor | None
    """(B, C, H, W) normalized model inputs of the readable items (on CPU)."""
    thumbs: np.ndarray | None
    failed: list[tuple[int, str]]
    """(index, reason) of the unreadable items."""


def _load_batch(ds: ImageDataset, model: Model, indices: Sequence[int], thumb: int) -> _Loaded:
    """Decode, resize, normalize and thumbnail one batch (runs on the loader thread)."""
    got = ds.load_batch(indices)
    if not got.indices:
        return _Loaded([], None, None, got.failed)
    pixels = model.resize(got.images)
    return _Loaded(list(zip(got.indices, got.labels)), model.normalize(pixels),
                   make_thumbnails(pixels, thumb), got.failed)


class _Inline:
    """An executor that runs each task at once, in the calling thread (see :func:`_helper`)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args))
        except Exception as err:  # delivered by result(), as a worker thread's would be
            future.set_exception(err)
        return future


def _helper(device: torch.device) -> ThreadPoolExecutor | _Inline:
    """A background thread for loading or writing, when there is a core for it to run on.

    With the model on an accelerator, or with more CPU cores than torch's intra-op threads,
    decoding the next batch and committing the last chunk overlap the forward. Otherwise the
    thread only competes with torch's threads for the cores. On this project's 2-core VM a
    loader and a writer thread made the MNIST-5k scan 11% slower than doing both in turn; Lite0
    on JPEGs gained nothing with jemalloc and ran 43% slower with glibc's malloc.
    """
    spare = (os.cpu_count() or 1) > torch.get_num_threads()
    return ThreadPoolExecutor(max_workers=1) if device.type != "cpu" or spare else _Inline()


def _batches(ds: ImageDataset, model: Model, indices: list[int], size: int, thumb: int
             ) -> Iterator[_Loaded]:
    """Loaded batches of ``indices``; the next one is prepared while the caller computes
    (when :func:`_helper` finds a core for it)."""
    groups = [indices[s:s + size] for s in range(0, len(indices), size)]
    with _helper(model.device) as pool:
        future = pool.submit(_load_batch, ds, model, groups[0], thumb) if groups else None
        for g in range(len(groups)):
            assert future is not None
            loaded = future.result()
            if g + 1 < len(groups):
                future = pool.submit(_load_batch, ds, model, groups[g + 1], thumb)
            yield loaded


def _scan_share(scanner: Scanner, ds: ImageDataset, model: Model, indices: list[int],
                batch_size: int, thumb: int, report: Callable[[int], None]) -> dict[str, Any]:
    """This process's share of one chunk, reduced to CPU tensors/arrays and image rows."""
    scanner.topk = {}
    rows: list[ImageRow] = []
    emb: dict[str, list[np.ndarray]] = {n: [] for n in scanner.layers}
    thumbs, written = [], []
    for batch in _batches(ds, model, indices, batch_size, thumb):
        rows += [ImageRow(i, None, -1, float("nan"), "skipped", why) for i, why in batch.failed]
        if batch.inputs is not None and batch.thumbs is not None:
            x = batch.inputs.to(model.device, non_blocking=True)
            result = scanner.step(x, torch.tensor([i for i, _ in batch.ok]))
            preds, probs = result.predictions.tolist(), result.probabilities.tolist()
            rows += [ImageRow(i, lab, p, q, "ok") for (i, lab), p, q in zip(batch.ok, preds, probs)]
            for name in scanner.layers:
                emb[name].append(result.embeddings[name].cpu().numpy())
            thumbs.append(batch.thumbs)
            written += [i for i, _ in batch.ok]
        report(len(batch.ok) + len(batch.failed))
    return {"rows": rows, "indices": written, "state": scanner.state(),
            "emb": {n: np.concatenate(v) if v else None for n, v in emb.items()},
            "thumbs": np.concatenate(thumbs) if thumbs else None}


def scan_dataset(
    model: Model,
    dataset: Any,
    atlas: str | os.PathLike,
    *,
    layers: str | Sequence[str] = "auto",
    k: int = 16,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    progress: ProgressFn | None = None,
    on_commit: Callable[[int], None] | None = None,
    relevance: bool = False,
    relevance_target: int | None = None,
) -> Atlas:
    """Scan ``dataset`` with ``model`` into the atlas folder ``atlas``, resuming if unfinished.

    Args:
        model: the model (its preprocessing is applied to every image).
        dataset: anything :func:`convscope.data.datasets.open_dataset` accepts.
        atlas: the atlas folder (created; or resumed when it holds an unfinished scan with the
            same configuration; a finished one is returned as it is).
        layers: layer names (``"auto"`` allowed) whose channels and embeddings are recorded.
        k: top images kept per channel.
        batch_size: images per forward pass (default: :func:`scan_batch_size` of the device and
            input size).
        chunk_size: images per committed chunk (default ``max(512, 8 * batch_size)``).
        progress: ``progress(images done, total)`` (rank 0 only under torchrun).
        on_commit: called with the number of committed chunks after each commit (rank 0).
        relevance: also record each channel's relevance exemplars (RelMax,
            :mod:`convscope.methods.concepts.relmax`): the images where the channel carries the
            most LRP relevance for the predicted class, or for ``relevance_target`` when given;
            read them with ``atlas.top(layer, channel, kind="relevance")``.
    """
    ds = open_dataset(dataset)
    scanner = Scanner(model, layers, k=k, relevance=relevance, relevance_target=relevance_target)
    batch = scan_batch_size(model.device, model.input_size) if batch_size is None else batch_size
    chunk_size = max(DEFAULT_CHUNK, 8 * batch) if chunk_size is None else chunk_size
    check_positive("batch_size", batch, integer=True)
    check_positive("chunk_size", chunk_size, integer=True)
    infos = {i.name: i for i in list_layers(model)}
    rows = {n: n.removesuffix(AFTER_RELU) for n in scanner.layers}  # relu keeps the shape
    channels = {n: infos[r].channels if r in infos else 0 for n, r in rows.items()}
    thumb = min(MAX_THUMB, max(model.input_size))
    config = {"model": model.name, "model_fingerprint": weights_digest(model)[:40], "layers": scanner.layers,
              "k": k, "dataset": _dataset_spec(dataset), "size": len(ds), "chunk_size": chunk_size,
              "batch_size": batch, "class_names": ds.class_names}
    if scanner.relevance is not None:  # only then: older atlases keep resuming
        config["relevance"] = {"target": relevance_target, "composite": "epsilon_plus"}
    path = Path(atlas).expanduser()
    joined = dist.init_from_env(model.device)
    try:
        return _run(model, ds, scanner, path, config, channels, thumb, batch, chunk_size,
                    progress, on_commit)
    finally:
        dist.shutdown(joined)


def _run(model: Model, ds: ImageDataset, scanner: Scanner, path: Path, config: dict[str, Any],
         channels: dict[str, int], thumb: int, batch: int, chunk_size: int,
         progress: ProgressFn | None, on_commit: Callable[[int], None] | None) -> Atlas:
    rank, world = dist.rank(), dist.world_size()
    start: Any = None
    if rank == 0:
        try:
            start = _open_or_create(path, config, ds, channels, thumb)
        except Exception as err:  # every process must learn about it, or the others hang
            start = err
    start = dist.broadcast(start)
    if isinstance(start, Exception):
        raise start
    done_chunks, blob = start
    n = len(ds)
    if done_chunks >= 0:
        state = {name: TopK.from_state(s) for name, s in unpack_state(blob).items()} if blob else {}
        store = Atlas.open(path, partial=True) if rank == 0 else None
        chunks = range(done_chunks, (n + chunk_size - 1) // chunk_size)
        done = min(done_chunks * chunk_size, n)
        # rank 0 writes chunk c on a writer thread (when there is a core for it) while chunk
        # c + 1 is computed; one commit is in flight at a time, so they stay in order and atomic
        with _helper(model.device) as writer:
            pending: Future[int] | None = None
            for c in chunks:
                first = c * chunk_size
                indices = list(range(first, min(first + chunk_size, n)))[rank::world]
                counter = [done]

                def report(count: int, counter: list[int] = counter) -> None:
                    counter[0] += count * world
                    if progress is not None and rank == 0:
                        progress(min(counter[0], n), n)

                share = _scan_share(scanner, ds, model, indices, batch, thumb, report)
                shares = dist.gather(share)
                done = min(first + chunk_size, n)
                if store is not None:
                    state = _merge(shares, state)
                    _committed(pending, on_commit)
                    pending = writer.submit(_write, store, shares, pack_state(
                        {name: t.state() for name, t in state.items()}), c + 1)
                    if progress is not None:
                        progress(done, n)
            _committed(pending, on_commit)
        if store is not None:
            store.finish({name: t.records() for name, t in state.items()})
            _warn_skipped(store)
    dist.broadcast(None)  # wait for rank 0 to finish writing
    return Atlas.open(path)


def _merge(shares: list[dict[str, Any]], state: dict[str, TopK]) -> dict[str, TopK]:
    """Rank 0: the running top-k with every share's merged in (exact in any order)."""
    for share in shares:
        for name, part in share["state"].items():
            merged = TopK.from_state(part)
            state[name] = state[name].combine(merged) if name in state else merged
    return state


def _write(store: Atlas, shares: list[dict[str, Any]], state: bytes, chunks: int) -> int:
    """Rank 0, on the writer thread: all shares' arrays at once (their strided rows interleave
    into contiguous runs: one sync per file), then the chunk's one transaction."""
    parts = [s for s in shares if s["indices"]]
    if len(parts) == 1:
        store.write_arrays(parts[0]["indices"], parts[0]["emb"], parts[0]["thumbs"])
    elif parts:
        store.write_arrays([i for s in parts for i in s["indices"]],
                           {name: np.concatenate([s["emb"][name] for s in parts])
                            for name in parts[0]["emb"]},
                           np.concatenate([s["thumbs"] for s in parts]))
    rows = sorted((r for s in shares for r in s["rows"]), key=lambda r: r.index)
    store.commit_chunk(chunks, rows, state)
    return chunks


def _committed(pending: Future[int] | None, on_commit: Callable[[int], None] | None) -> None:
    """Wait for the commit in flight (re-raising its error) and tell ``on_commit``."""
    if pending is not None:
        chunks = pending.result()
        if on_commit is not None:
            on_commit(chunks)


def _warn_skipped(store: Atlas) -> None:
    skipped = store.skipped()
    if skipped:
        shown = "; ".join(f"{src} ({reason})" for _, src, reason in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warn(f"scan skipped {len(skipped)} unreadable item(s): {shown}{more}",
             UserWarning)
