"""``leaderboard``: every chosen method against every chosen metric over a dataset, ranked.

The per-batch work is :func:`~convscope.tasks.evaluate.score_methods`, the same scoring that
``evaluate`` runs on one batch; this module walks a dataset in chunks, takes each batch's
targets and regions from :mod:`.leaderboard_inputs` (boxes or masks come from a CSV file,
:mod:`convscope.data.regions`), and hands the per-image scores to
:mod:`.leaderboard_table`, which computes the means, intervals, ranks and ties.

Resumable like the scan (:mod:`.scan`): with ``checkpoint=FILE`` every finished chunk is
committed to a JSON file (written beside it and renamed into place, so a kill leaves the last
commit whole). A second call with the same settings continues after the last committed chunk,
and, because chunks and their batches are the same images in the same order, gives exactly the
numbers of an uninterrupted run. Under ``torchrun`` each process scores a strided share of each
chunk; rank 0 gathers, merges by image index and writes
(:mod:`convscope.methods.dataset.distributed`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.regions import read_regions
from ..errors import BadArgument, check_positive
from ..methods.dataset import distributed as dist
from ..methods.evaluation.bootstrap import DEFAULT_RESAMPLES
from ..methods.evaluation.metrics import available, metric_list
from ..methods.registry import method_list
from ..model import FastForward, Model
from ..model.digest import weights_digest
from ..types import ProgressFn, Target
from .evaluate import check_needs, score_methods
from .leaderboard_inputs import (
    Inputs,
    batch_regions,
    batch_targets,
    check_labels,
    class_map,
    open_leaderboard_dataset,
    subset,
)
from .leaderboard_table import Leaderboard, make_leaderboard
from .scan import _dataset_spec

DEFAULT_BATCH = 16
CHUNK_BATCHES = 4
"""Batches per committed chunk by default: a kill loses at most this much work."""


def leaderboard(
    model: Model,
    dataset: Any,
    methods: str | Sequence[str] = "all",
    metrics: str | Sequence[str] | None = None,
    *,
    target: Target = "label",
    images: int | None = None,
    regions: str | os.PathLike | None = None,
    layer: str = "auto",
    steps: int = 50,
    batch_size: int = DEFAULT_BATCH,
    chunk_size: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> Leaderboard:
    """Score ``methods`` with ``metrics`` on ``dataset`` and rank them, with 95% intervals.

    Args:
        dataset: ``"mnist5k"``, ``"samples"``, a folder (one subfolder per class for labels),
            or anything :func:`~convscope.data.datasets.open_dataset` accepts.
        methods: registry names, ``"a,b"`` or ``"all"``.
        metrics: names or groups of the metric registry; default the faithfulness group, and
            the localization group when ``regions`` is given.
        target: ``"label"`` (the dataset's class, mapped to the model's class by name),
            ``"top1"``, or any target :func:`~convscope.explain` takes.
        images: score this many images spread evenly over the dataset (default all).
        regions: a CSV of boxes or masks per image (:mod:`convscope.data.regions`).
        steps: steps of the curve metrics (deletion, insertion ...).
        chunk_size: images per committed chunk (default 4 batches).
        checkpoint: a JSON file to commit chunks to and resume from.
        resamples, seed: the bootstrap's draws.
        options: keyword options for every method.
        progress: ``progress(images done, total)``, rank 0 only under torchrun.
    """
    check_positive("steps", steps, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    check_positive("resamples", resamples, integer=True)
    chunk = CHUNK_BATCHES * batch_size if chunk_size is None else chunk_size
    check_positive("chunk_size", chunk, integer=True)
    names, chosen = choose(model, methods, metrics, regions=regions is not None)
    shown = str(dataset) if isinstance(dataset, (str, os.PathLike)) else type(dataset).__name__
    ds = open_leaderboard_dataset(dataset)
    indices = subset(len(ds), images)
    found = None
    if regions is not None:
        root = getattr(ds, "root", None)
        found = read_regions(regions, ds.sources(), root if isinstance(root, Path) else None)
        missing = [i for i in indices if i not in found]
        if missing:
            raise BadArgument(f"{len(missing)} of the {len(indices)} images have no box or mask in "
                              f"'{regions}' (the first: {ds.sources()[missing[0]]}); add them, or "
                              "leave the localization metrics out")
    check_labels(ds, indices, target, shown)
    classes = class_map(ds, model, shown) if target == "label" else None
    job = Inputs(model, ds, names, chosen, target, classes, found, layer, steps, options or {}, shown)
    config = {"model": model.name, "fingerprint": weights_digest(model)[:40],
              "dataset": _dataset_spec(dataset) or shown, "size": len(ds), "indices": _digest(indices),
              "methods": names, "metrics": chosen, "target": str(target), "layer": layer,
              "steps": steps, "batch_size": batch_size, "chunk_size": chunk,
              "options": json.loads(json.dumps(options or {}, default=str)),
              "regions": _file_digest(regions)}
    joined = dist.init_from_env(model.device)
    try:
        state = _run(job, indices, batch_size, chunk, config,
                     Path(checkpoint) if checkpoint is not None else None, progress)
    finally:
        dist.shutdown(joined)
    if not state["indices"]:
        raise BadArgument(f"no image of dataset {shown} could be read ({len(state['skipped'])} "
                          "unreadable); check the files")
    return make_leaderboard(model.name, shown, str(target), names, chosen, state,
                            resamples=resamples, seed=seed)


def choose(model: Model, methods: str | Sequence[str], metrics: str | Sequence[str] | None, *,
           regions: bool) -> tuple[list[str], list[str]]:
    """Checked method and metric names (the web checks them before it queues a job): unknown
    names, and a metric that needs boxes or masks the run lacks, are refused in one line."""
    names = method_list(methods)
    chosen = metric_list(metrics if metrics is not None else
                         ["faithfulness"] + (["localization"] if regions else []))
    check_needs(chosen, available(region=regions), "give --regions FILE with a box or mask per image")
    return names, chosen


def _digest(values: Any) -> str:
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


def _file_digest(path: str | os.PathLike | None) -> str | None:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _empty_state() -> dict[str, Any]:
    return {"chunks": 0, "indices": [], "scores": {}, "seconds": {}, "errors": {}, "skipped": []}


def _start(path: Path | None, config: dict[str, Any]) -> dict[str, Any]:
    """Rank 0: the committed state of an unfinished run with the same settings, or a new one."""
    if path is None or not path.is_file():
        return _empty_state()
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        stored = saved["config"]
    except (ValueError, KeyError, TypeError):
        raise BadArgument(f"checkpoint '{path}' is not a leaderboard checkpoint; use another --out "
                          "folder (or delete the file) to start over") from None
    if stored != config:
        diff = ", ".join(k for k in config if stored.get(k) != config[k])
        raise BadArgument(f"checkpoint '{path}' was made with other settings ({diff}); use another "
                          "--out folder (or delete it) to start over")
    state: dict[str, Any] = saved["state"]
    return state


def _commit(path: Path, config: dict[str, Any], state: dict[str, Any]) -> None:
    """Write the checkpoint whole or not at all (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        json.dump({"config": config, "state": state}, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _run(job: Inputs, indices: list[int], batch_size: int, chunk: int, config: dict[str, Any],
         path: Path | None, progress: ProgressFn | None) -> dict[str, Any]:
    rank, world = dist.rank(), dist.world_size()
    start: Any = None
    if rank == 0:
        try:
            start = _start(path, config)
        except Exception as err:  # every process must learn about it, or the others hang
            start = err
    start = dist.broadcast(start)
    if isinstance(start, Exception):
        raise start
    state: dict[str, Any] = start
    total = len(indices)
    chunks = [indices[s:s + chunk] for s in range(0, total, chunk)]
    state["resumed"] = min(state["chunks"] * chunk, total)
    done = state["resumed"]
    for number in range(state["chunks"], len(chunks)):
        mine = chunks[number][rank::world]
        failed = set(state["errors"])
        share: dict[str, Any] = {"indices": [], "scores": {}, "seconds": {}, "errors": {}, "skipped": []}
        for s in range(0, len(mine), batch_size):
            _score_batch(job, mine[s:s + batch_size], failed, share)
            done = min(done + len(mine[s:s + batch_size]) * world, total)
            if progress is not None and rank == 0:
                progress(done, total)
        shares = dist.gather(share)
        if rank == 0:
            _merge(state, shares)
            state["chunks"] = number + 1
            if path is not None:
                _commit(path, config, state)
    state = dist.broadcast(state)
    return state


def _score_batch(job: Inputs, indices: list[int], failed: set[str], share: dict[str, Any]) -> None:
    """Every method still standing on one batch; the scores go into ``share`` per image."""
    got = job.ds.load_batch(indices)
    share["skipped"] += [[i, why] for i, why in got.failed]
    alive = [m for m in job.methods if m not in failed]
    if not got.indices or not alive:
        return
    model = job.model
    x = model.preprocess(got.images)
    fast = FastForward(model)
    targets = batch_targets(job, got, fast(x))
    boxes, masks = batch_regions(job, got)
    rows = score_methods(model, x, alive, targets, job.metrics, layer=job.layer, boxes=boxes,
                         masks=masks, steps=job.steps, fast=fast, options=job.options,
                         keep_errors=len(job.methods) > 1)
    share["indices"] += got.indices
    for row in rows:
        if row.error is not None:
            share["errors"][row.method] = row.error
            failed.add(row.method)
            continue
        scores = share["scores"].setdefault(row.method, {})
        for metric, values in row.per_image.items():
            scores.setdefault(metric, []).extend(values)
        share["seconds"][row.method] = share["seconds"].get(row.method, 0.0) + row.seconds


def _merge(state: dict[str, Any], shares: list[dict[str, Any]]) -> None:
    """Rank 0: the shares' per-image scores added to ``state`` in image order (the order of an
    unsharded run); a method that failed anywhere is dropped everywhere."""
    for share in shares:
        state["errors"].update(share["errors"])
        state["skipped"] += share["skipped"]
        for method, seconds in share["seconds"].items():
            state["seconds"][method] = state["seconds"].get(method, 0.0) + seconds
    flat = [i for s in shares for i in s["indices"]]
    order = sorted(range(len(flat)), key=flat.__getitem__)
    state["indices"] += [flat[k] for k in order]
    for method in dict.fromkeys([*state["scores"], *(m for s in shares for m in s["scores"])]):
        if method in state["errors"]:
            state["scores"].pop(method, None)
            continue
        kept = state["scores"].setdefault(method, {})
        metrics = dict.fromkeys(m for s in shares for m in s["scores"].get(method, {}))
        for metric in metrics:
            values = [v for s in shares for v in s["scores"][method][metric]]
            kept.setdefault(metric, []).extend(values[k] for k in order)
