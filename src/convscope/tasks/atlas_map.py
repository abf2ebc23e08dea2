"""The dataset map of an atlas: every image's 2-D projection, maps aligned across atlases,
thumbnail tiles, and the questions a map page asks about points (search, rows, confusion, export).

Nothing here holds all embeddings to answer a page: tiles, rows and columns read only what they
need from the atlas store (memory-mapped arrays, SQL rows). Only :func:`map_coords`, which runs as
a job, reads a layer's embeddings, chunk by chunk, into one array for the projection
(:func:`convscope.methods.dataset.projection.project`, the same code as ``convscope project``).

Coordinates are ``(N, 2)`` float32 in index order with NaN rows for images the scan skipped, so
the map has every point of the atlas and a point's row is its dataset index.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.linalg import orthogonal_procrustes

from ..data.atlas import Atlas
from ..errors import BadArgument
from ..methods.dataset.projection import PROJECTIONS, project
from ..types import ProgressFn

TILE_PIXELS = 1024
"""A thumbnail tile is at most this many pixels wide: ``tile_side`` thumbnails a row and column."""
COLUMNS = ("labels", "predictions", "confidence")
"""Per-point columns served as raw little-endian arrays (int32, int32, float32)."""
TSNE_EVERY = 25
"""t-SNE iterations between two progress reports."""
EXPORT_FORMATS = ("csv", "json")
EXPORT_COLUMNS = ("index", "path", "label", "label_name", "prediction", "prediction_name",
                  "confidence", "x", "y")


@dataclass(frozen=True)
class MapCoords:
    """A projection of every point of one atlas layer."""

    coords: np.ndarray
    """(N, 2) float32 in index order; NaN rows for images without an embedding."""
    method: str
    layer: str
    projected: int
    seconds: float


@dataclass(frozen=True)
class Alignment:
    """How a map was moved onto another: ``aligned = scale * coords @ rotation + shift``."""

    coords: np.ndarray
    scale: float
    rotation: np.ndarray
    shift: np.ndarray
    shared: int
    """Points present (and projected) in both maps, which the fit used."""
    rms: float
    """Root-mean-square distance of the shared points after the fit, in the reference's units."""


# ---- the map --------------------------------------------------------------------------------
def check_method(method: str) -> str:
    if method not in PROJECTIONS:
        raise BadArgument(f"projection method {method!r}: use one of {', '.join(PROJECTIONS)}")
    return method


def map_coords(atlas: Atlas, layer: str, method: str = "pca", *, seed: int = 0,
               progress: ProgressFn | None = None, **options: Any) -> MapCoords:
    """Project every scanned image of ``layer`` (no sampling) with ``method``; options go to
    :func:`~convscope.methods.dataset.projection.project`."""
    check_method(method)
    iterations = 0
    if progress is not None and method == "tsne" and "callbacks" not in options:
        iterations, ticks = _tsne_ticks(progress, options)
        options = {**options, **ticks}
    steps = 2 + iterations
    if progress is not None:
        progress(0, steps)
    indices, embeddings = atlas.valid_embeddings(layer)
    if progress is not None:
        progress(1, steps)
    start = time.perf_counter()
    xy = project(torch.from_numpy(embeddings), method, dims=2, seed=seed, **options)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    coords = np.full((atlas.size, 2), np.nan, dtype=np.float32)
    coords[indices] = xy.numpy()
    if progress is not None:
        progress(steps, steps)
    return MapCoords(coords, method, layer, len(indices), seconds)


def _tsne_ticks(progress: ProgressFn, options: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """openTSNE options that report every ``TSNE_EVERY`` iterations through ``progress`` (which
    may raise to cancel: a t-SNE of minutes stops mid-optimization, not at its end)."""
    total = int(options.get("early_exaggeration_iter", 250)) + int(options.get("n_iter", 500))
    done = [0]

    def tick(iteration: int, error: float, embedding: Any) -> bool:
        done[0] = min(done[0] + TSNE_EVERY, total)
        progress(1 + done[0], 2 + total)
        return False

    return total, {"callbacks": tick, "callbacks_every_iters": TSNE_EVERY}


def shared_points(atlas: Atlas, reference: Atlas) -> tuple[np.ndarray, np.ndarray]:
    """``(rows in atlas, rows in reference)`` of the images both scanned, matched by source."""
    where = {source: i for i, source in enumerate(reference.sources())}
    pairs = [(i, where[s]) for i, s in enumerate(atlas.sources()) if s in where]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    mine, theirs = np.asarray(pairs, dtype=np.int64).T
    return mine, theirs


def align_coords(coords: np.ndarray, reference: np.ndarray, rows: np.ndarray,
                 reference_rows: np.ndarray) -> Alignment:
    """Move ``coords`` onto ``reference`` by the similarity transform (scale, rotation or
    reflection, shift) that best fits the shared points ``coords[rows] ~ reference[reference_rows]``
    in least squares (orthogonal Procrustes): two maps of the same images become comparable
    point by point without changing either map's shape."""
    a, b = coords[rows].astype(np.float64), reference[reference_rows].astype(np.float64)
    both = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    a, b = a[both], b[both]
    if len(a) < 3:
        raise BadArgument(f"the two maps share {len(a)} projected images; aligning needs at least 3 "
                          "(atlases of the same dataset)")
    mean_a, mean_b = a.mean(0), b.mean(0)
    a0, b0 = a - mean_a, b - mean_b
    norm = float((a0**2).sum())
    if norm == 0:
        raise BadArgument("the shared images all sit at one point of the map; nothing to align")
    rotation, singular_sum = orthogonal_procrustes(a0, b0)
    scale = float(singular_sum) / norm
    shift = mean_b - scale * mean_a @ rotation
    aligned = (scale * coords.astype(np.float64) @ rotation + shift).astype(np.float32)
    rms = float(np.sqrt(((scale * a0 @ rotation - b0) ** 2).sum(1).mean()))
    return Alignment(aligned, scale, rotation, shift, len(a), rms)


# ---- tiles and columns ------------------------------------------------------------------------
def tile_side(atlas: Atlas) -> int:
    """Thumbnails per row (and column) of a tile."""
    return max(1, TILE_PIXELS // int(atlas.meta["thumb_size"]))


def tile_count(atlas: Atlas) -> int:
    return math.ceil(atlas.size / tile_side(atlas) ** 2)


def check_tile(atlas: Atlas, tile: int) -> int:
    count = tile_count(atlas)
    if not 0 <= tile < count:
        raise BadArgument(f"tile {tile} is outside atlas '{atlas.path.name}' (0..{count - 1})")
    return tile


def tile_thumbnails(atlas: Atlas, tile: int) -> np.ndarray:
    """(k, t, t, 3) uint8 thumbnails of tile ``tile``: images ``tile * side²`` onwards, in order."""
    check_tile(atlas, tile)
    per = tile_side(atlas) ** 2
    return atlas.thumbnails(np.arange(tile * per, min((tile + 1) * per, atlas.size)))


def thumbnail(atlas: Atlas, index: int) -> np.ndarray:
    """(t, t, 3) uint8 thumbnail of one image."""
    return atlas.thumbnails(check_indices(atlas, [index]))[0]


def column_bytes(atlas: Atlas, name: str) -> bytes:
    """One per-point column as raw little-endian bytes: labels and predictions int32 (-1 unknown),
    confidence float32 (the predicted class's probability, NaN unknown)."""
    if name == "labels":
        values: np.ndarray = atlas.labels().astype("<i4")
    elif name == "predictions":
        values = atlas.predictions().astype("<i4")
    elif name == "confidence":
        values = atlas.probabilities().astype("<f4")
    else:
        raise BadArgument(f"column {name!r}: use one of {', '.join(COLUMNS)}")
    return values.tobytes()


def map_info(atlas: Atlas) -> dict[str, Any]:
    """What a map page needs before any point: size, layers, classes and the tile geometry."""
    return {"n": atlas.size, "layers": atlas.layers, "channels": atlas.channels,
            "class_names": atlas.class_names, "thumb_size": int(atlas.meta["thumb_size"]),
            "tile_side": tile_side(atlas), "tile_count": tile_count(atlas),
            "model": atlas.model_name, "dataset": atlas.dataset,
            "skipped": int(atlas.meta.get("skipped", 0)), "methods": list(PROJECTIONS)}


# ---- points: checking, search, rows, confusion, export -------------------------------------
def check_indices(atlas: Atlas, indices: Sequence[Any]) -> np.ndarray:
    """Image indices from a request as int64, each inside the atlas (else a clear error)."""
    if not isinstance(indices, (list, tuple, np.ndarray)):
        raise BadArgument("indices must be a list of image indices")
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise BadArgument(f"index {i!r} is not an integer image index")
        if not 0 <= int(i) < atlas.size:
            raise BadArgument(f"index {int(i)} is outside atlas '{atlas.path.name}' (0..{atlas.size - 1})")
    return np.asarray(indices, dtype=np.int64).reshape(-1)


def search(atlas: Atlas, query: str) -> np.ndarray:
    """Indices of images whose label name equals ``query`` (case-insensitive) or whose file name
    (or dataset item, e.g. ``mnist5k:12``) contains it, in index order."""
    text = query.strip()
    if not text:
        raise BadArgument("search: give a label name or part of a file name")
    found = atlas.find_sources(text)
    names = [n.lower() for n in atlas.class_names or []]
    if text.lower() in names:
        found = np.union1d(found, np.flatnonzero(atlas.labels() == names.index(text.lower())))
    return found.astype(np.int64)


def _name(names: Sequence[str] | None, index: int) -> str | None:
    return names[index] if names is not None and 0 <= index < len(names) else None


def item_rows(atlas: Atlas, indices: Sequence[Any], prediction_names: Sequence[str] | None = None
              ) -> list[dict[str, Any]]:
    """One row per index (the selection grid): source, label, prediction and confidence."""
    rows = atlas.rows(check_indices(atlas, indices).tolist())
    names = atlas.class_names
    return [{"index": i, "source": source,
             "label": label if label >= 0 else None, "label_name": _name(names, label),
             "prediction": pred if pred >= 0 else None,
             "prediction_name": _name(prediction_names, pred),
             "confidence": None if math.isnan(prob) else round(prob, 6), "status": status}
            for i, source, label, pred, prob, status in rows]


def confusion(atlas: Atlas) -> np.ndarray:
    """(K, K) int64 counts of true label (rows) against prediction (columns) over the labelled,
    scanned images; K covers the class names and every index seen."""
    labels, predictions = atlas.labels(), atlas.predictions()
    seen = (labels >= 0) & (predictions >= 0)
    k = max(len(atlas.class_names or []), int(labels.max(initial=-1)) + 1,
            int(predictions.max(initial=-1)) + 1)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (labels[seen], predictions[seen]), 1)
    return matrix


def confusion_cell(atlas: Atlas, true: int, predicted: int) -> np.ndarray:
    """Indices of the images with label ``true`` predicted as ``predicted``."""
    k = confusion(atlas).shape[0]
    for name, value in (("true class", true), ("predicted class", predicted)):
        if not 0 <= value < k:
            raise BadArgument(f"{name} {value} is outside the confusion matrix (0..{k - 1})")
    return np.flatnonzero((atlas.labels() == true) & (atlas.predictions() == predicted)).astype(np.int64)


def export_selection(atlas: Atlas, indices: Sequence[Any], coords: np.ndarray, fmt: str,
                     prediction_names: Sequence[str] | None = None) -> bytes:
    """A selection as CSV or JSON: path, label, prediction, confidence and map coordinates."""
    if fmt not in EXPORT_FORMATS:
        raise BadArgument(f"export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    records = []
    for row in item_rows(atlas, indices, prediction_names):
        x, y = (float(v) for v in coords[row["index"]])
        records.append({"index": row["index"], "path": row["source"], "label": row["label"],
                        "label_name": row["label_name"], "prediction": row["prediction"],
                        "prediction_name": row["prediction_name"], "confidence": row["confidence"],
                        "x": None if math.isnan(x) else x, "y": None if math.isnan(y) else y})
    if fmt == "json":
        return json.dumps(records).encode()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
    return out.getvalue().encode()
