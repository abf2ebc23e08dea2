"""``leaderboard``: every chosen method against every chosen metric over a dataset, ranked.

The per-batch work is :func:`~convscope.tasks.evaluate.score_methods`, the same scoring that
``evaluate`` runs on one batch; this module walks a dataset in chunks, resolves each batch's
targets (the dataset's labels, or the top class) and regions (boxes or masks from a CSV file,
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..data.datasets import ImageDataset, LoadedBatch, open_dataset
from ..data.regions import Region, read_regions
from ..errors import BadArgument, check_positive
from ..methods.dataset import distributed as dist
from ..methods.evaluation.bootstrap import DEFAULT_RESAMPLES
from ..methods.evaluation.metrics import MetricInput, metric_list
from ..model import FastForward, Model, target_indices
from ..model.digest import weights_digest
from ..types import ProgressFn, Target
from .evaluate import check_box, check_needs, method_list, scale_box, score_methods
from .leaderboard_table import Leaderboard, make_leaderboard
from .scan import _dataset_spec

SAMPLES = "samples"
"""The dataset of scikit-image sample photos (labelled with their ImageNet class where they have one)."""
DEFAULT_BATCH = 16
CHUNK_BATCHES = 4
"""Batches per committed chunk by default: a kill loses at most this much work."""


def open_leaderboard_dataset(spec: Any) -> ImageDataset:
    """``"samples"`` (the sample photos), or anything :func:`open_dataset` accepts."""
    if spec == SAMPLES:
        from ..data.samples import SAMPLES as PHOTOS

        return open_dataset([(f"sample:{name}", s.imagenet_class) for name, s in PHOTOS.items()])
    ds = open_dataset(spec)
    if len(ds) == 0:
        raise BadArgument(f"dataset {spec!r} is empty; give a folder or list with at least one image")
    return ds


def class_map(ds: ImageDataset, model: Model, dataset: str) -> list[int] | None:
    """The model's class index of each of the dataset's classes (by name: subfolder ``tabby``
    -> the model's label ``tabby``); None when the dataset's labels are model indices already."""
    if ds.class_names is None:
        return None
    labels = model.labels or []
    exact = {name: i for i, name in enumerate(labels)}
    folded = {name.lower(): i for i, name in enumerate(labels)}
    out = []
    for name in ds.class_names:
        index = exact.get(name, folded.get(name.lower()))
        if index is None and not labels and name.isdigit():
            index = int(name)
        if index is None:
            example = ", ".join(labels[:3])
            raise BadArgument(f"class {name!r} of dataset {dataset} is not a class of model {model.name} "
                              f"({example}, ...); name the classes after the model's labels, or use "
                              "--target top1")
        out.append(index)
    return out


def subset(size: int, images: int | None) -> list[int]:
    """``images`` indices spread evenly over the dataset (all when None): MNIST-5k is stored by
    class, so the first 200 would all be zeros."""
    if images is None or images >= size:
        return list(range(size))
    check_positive("images", images, integer=True)
    return [i * size // images for i in range(images)]


@dataclass(frozen=True)
class _Job:
    """What every batch needs: the model, the choices, and how to find targets and regions."""

    model: Model
    ds: ImageDataset
    methods: list[str]
    metrics: list[str]
    target: Target
    classes: list[int] | None
    regions: dict[int, Region] | None
    layer: str
    steps: int
    options: dict[str, Any]
    dataset: str


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
    _check_labels(ds, indices, target, shown)
    classes = class_map(ds, model, shown) if target == "label" else None
    job = _Job(model, ds, names, chosen, target, classes, found, layer, steps, options or {}, shown)
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
    probe = torch.zeros(0)
    check_needs(chosen, MetricInput(model, probe, probe, probe, FastForward(model),
                                    boxes=probe if regions else None, explain=lambda m, i: i),
                "give --regions FILE with a box or mask per image")
    return names, chosen


def _check_labels(ds: ImageDataset, indices: list[int], target: Target, dataset: str) -> None:
    """With ``target="label"``, refuse a dataset whose chosen items lack labels (known without
    decoding for folders and MNIST-5k; other datasets are checked batch by batch)."""
    if target != "label":
        return
    labels = getattr(ds, "labels", None)
    if labels is not None and len(labels) == len(ds):
        unlabelled = [i for i in indices if labels[i] is None]
        if unlabelled:
            raise BadArgument(f"dataset {dataset} has no labels (e.g. {ds.sources()[unlabelled[0]]}); "
                              "put each class in a subfolder named after it, or use --target top1")


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
    saved = json.loads(path.read_text(encoding="utf-8"))
    stored = saved.get("config", {})
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


def _run(job: _Job, indices: list[int], batch_size: int, chunk: int, config: dict[str, Any],
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


def _score_batch(job: _Job, indices: list[int], failed: set[str], share: dict[str, Any]) -> None:
    """Every method still standing on one batch; the scores go into ``share`` per image."""
    got = job.ds.load_batch(indices)
    share["skipped"] += [[i, why] for i, why in got.failed]
    alive = [m for m in job.methods if m not in failed]
    if not got.indices or not alive:
        return
    model = job.model
    x = model.preprocess(got.images)
    fast = FastForward(model)
    targets = _targets(job, got, fast(x))
    boxes, masks = _regions(job, got)
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


def _targets(job: _Job, got: LoadedBatch, logits: Tensor) -> Tensor:
    """The class each image is explained for: its label (mapped to the model's classes) or the
    target the user gave."""
    if job.target != "label":
        found = target_indices(logits, job.target, job.model.labels)
        if found is None:
            raise BadArgument("the leaderboard needs class targets (label, top1, an index or a name), "
                              "not a callable")
        return found
    out = []
    for index, label in zip(got.indices, got.labels):
        if label is None:
            raise BadArgument(f"dataset {job.dataset} has no label for {job.ds.sources()[index]}; "
                              "use --target top1")
        out.append(job.classes[label] if job.classes is not None else label)
    classes = logits.shape[-1]
    if max(out) >= classes:
        raise BadArgument(f"label {max(out)} of dataset {job.dataset} is beyond the model's {classes} "
                          "classes; use --target top1")
    return torch.tensor(out, device=logits.device)


def _regions(job: _Job, got: LoadedBatch) -> tuple[Tensor | None, Tensor | None]:
    """(boxes (B, 4), masks (B, H, W)) in model-input pixels for the batch; masks when any image
    has one (a box becomes a filled rectangle), else boxes; (None, None) without regions."""
    if job.regions is None:
        return None, None
    model = job.model
    size = model.input_size
    boxes, masks, any_mask = [], [], False
    for index, image in zip(got.indices, got.images):
        region = job.regions[index]
        source = job.ds.sources()[index]
        seen = model.spec.box(*image.shape[-2:])
        mask = region.mask_image()
        if mask is not None:
            if mask.shape[-2:] != image.shape[-2:]:
                raise BadArgument(f"mask {region.mask} is {mask.shape[-1]}x{mask.shape[-2]} but image "
                                  f"{source} is {image.shape[-1]}x{image.shape[-2]}; make them the same size")
            any_mask = True
            masks.append(model.resize([mask.expand(3, -1, -1)])[0, 0] > 0.5)
        else:
            assert region.box is not None
            top, left, bottom, right = scale_box(check_box(region.box, image, f"box of {source}"), seen, size)
            filled = torch.zeros(size, dtype=torch.bool)
            filled[top:bottom, left:right] = True
            masks.append(filled)
        if region.box is not None:
            boxes.append(scale_box(check_box(region.box, image, f"box of {source}"), seen, size))
    if any_mask:
        return None, torch.stack(masks).to(model.device)
    return torch.tensor(boxes, device=model.device), None


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
