"""Exact nearest neighbours of embeddings: chunked matrix products, FAISS when it is installed.

Distances, for queries q (Q, D) and database rows x (N, D):

* ``"cosine"``: ``1 - q.x / (|q| |x|)``, in [0, 2];
* ``"l2"``: ``|q - x| = sqrt(|q|^2 + |x|^2 - 2 q.x)`` (clamped at 0 against rounding).

The database is processed ``chunk_size`` rows at a time, each chunk's (Q, n) distances merged
into a running (Q, k) best list, so memory is bounded by one chunk whatever N is. Ties go to the
lower database index (stable sorts, as in :mod:`.topk`), so results are deterministic. Rows with
a non-finite value (images the scan skipped) are never returned; ``exclude`` removes one index
per query (the query's own row when querying by dataset index).

FAISS (``faiss-cpu``/``faiss-gpu``), when it imports, does the same exact search (flat index,
no approximation) for large databases (:data:`FAISS_MIN_ROWS`); it is never required.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ...errors import BadArgument, check_positive

Metric = Literal["cosine", "l2"]
FAISS_MIN_ROWS = 200_000
"""Databases at least this large use FAISS when it imports (below, torch is as fast)."""


@dataclass(frozen=True)
class Neighbors:
    """``indices`` (Q, k) database rows, nearest first; ``distances`` (Q, k) float32.

    When fewer than k rows are eligible, the tail holds index -1 and distance ``inf``.
    """

    indices: Tensor
    distances: Tensor


def _prepare(x: Tensor, metric: Metric) -> Tensor:
    x = x.float()
    if metric == "cosine":
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x


def _distances(q: Tensor, x: Tensor, q_sq: Tensor, metric: Metric) -> Tensor:
    dots = q @ x.t()
    if metric == "cosine":
        return 1 - dots
    return (q_sq[:, None] + (x * x).sum(1)[None, :] - 2 * dots).clamp_min(0).sqrt()


def _keep_best(dist: Tensor, idx: Tensor, k: int) -> tuple[Tensor, Tensor]:
    by_index = torch.sort(idx, dim=1, stable=True).indices
    dist, idx = dist.gather(1, by_index), idx.gather(1, by_index)
    order = torch.sort(dist, dim=1, stable=True).indices[:, :k]
    return dist.gather(1, order), idx.gather(1, order)


def nearest_neighbors(
    queries: Tensor,
    database: Tensor,
    *,
    k: int = 10,
    metric: Metric = "cosine",
    exclude: Tensor | None = None,
    chunk_size: int = 65536,
    use_faiss: bool | None = None,
) -> Neighbors:
    """The ``k`` nearest database rows of each query row (exact search).

    Args:
        queries: (Q, D) or (D,) embeddings.
        database: (N, D) embeddings; rows with NaN/inf are ineligible.
        k: neighbours per query.
        metric: ``"cosine"`` or ``"l2"``.
        exclude: (Q,) database index to leave out for each query (-1: none).
        chunk_size: database rows per matrix product.
        use_faiss: None = FAISS when installed and N >= :data:`FAISS_MIN_ROWS`.
    """
    if metric not in ("cosine", "l2"):
        raise BadArgument(f"metric={metric!r}: use 'cosine' or 'l2'")
    check_positive("k", k, integer=True)
    check_positive("chunk_size", chunk_size, integer=True)
    queries = queries[None] if queries.ndim == 1 else queries
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise BadArgument(f"queries {tuple(queries.shape)} and database {tuple(database.shape)} "
                          "must be (Q, D) and (N, D) with the same D")
    n = database.shape[0]
    excl = (torch.full((queries.shape[0],), -1, dtype=torch.long) if exclude is None
            else exclude.long().view(-1)).to(database.device)
    if use_faiss is None:
        use_faiss = n >= FAISS_MIN_ROWS and importlib.util.find_spec("faiss") is not None
    if use_faiss:
        return _faiss_search(queries, database, k, metric, excl)
    q = _prepare(queries.to(database.device), metric)
    q_sq = (q * q).sum(1)
    best_d = torch.full((q.shape[0], 0), float("inf"), device=database.device)
    best_i = torch.full((q.shape[0], 0), -1, dtype=torch.long, device=database.device)
    for start in range(0, n, chunk_size):
        rows = database[start:start + chunk_size].float()
        valid = torch.isfinite(rows).all(1)
        x = _prepare(torch.where(valid[:, None], rows, torch.zeros_like(rows)), metric)
        dist = _distances(q, x, q_sq, metric)
        idx = torch.arange(start, start + rows.shape[0], device=database.device).expand_as(dist)
        bad = ~valid[None, :] | (idx == excl[:, None])
        dist = dist.masked_fill(bad, float("inf"))
        best_d, best_i = _keep_best(torch.cat([best_d, dist], 1), torch.cat([best_i, idx], 1), k)
    best_i = best_i.masked_fill(torch.isinf(best_d), -1)
    return _padded(best_d, best_i, k)


def _padded(dist: Tensor, idx: Tensor, k: int) -> Neighbors:
    missing = k - dist.shape[1]
    if missing > 0:
        dist = torch.cat([dist, dist.new_full((dist.shape[0], missing), float("inf"))], 1)
        idx = torch.cat([idx, idx.new_full((idx.shape[0], missing), -1)], 1)
    return Neighbors(indices=idx, distances=dist)


def _faiss_search(queries: Tensor, database: Tensor, k: int, metric: Metric,
                  exclude: Tensor) -> Neighbors:
    """The same exact search with a FAISS flat index (only eligible rows are indexed)."""
    faiss = importlib.import_module("faiss")
    valid = torch.isfinite(database).all(1)
    rows = valid.nonzero().view(-1)
    x = _prepare(database[rows], metric).cpu().contiguous()
    q = _prepare(queries.to(database.device), metric).cpu().contiguous()
    index = faiss.IndexFlatIP(x.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(x.shape[1])
    index.add(x.numpy())
    found = min(k + 1, x.shape[0])
    scores, found_idx = index.search(q.numpy(), found)
    dist = torch.from_numpy(scores).float()
    dist = 1 - dist if metric == "cosine" else dist.clamp_min(0).sqrt()
    local = torch.from_numpy(found_idx).long()
    idx = torch.where(local >= 0, rows.cpu()[local.clamp_min(0)], torch.full_like(local, -1))
    dist = dist.masked_fill((idx == exclude.cpu()[:, None]) | (idx < 0), float("inf"))
    best_d, best_i = _keep_best(dist, idx, k)
    best_i = best_i.masked_fill(torch.isinf(best_d), -1)
    out = _padded(best_d, best_i, k)
    return Neighbors(out.indices.to(database.device), out.distances.to(database.device))
