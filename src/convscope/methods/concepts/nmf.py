"""Non-negative matrix factorization ``A ~= W H`` in torch, by HALS (hierarchical alternating
least squares; Cichocki & Phan 2009, Alg. 2; Gillis 2014, Sec. 3.1.3).

Concept discovery (Collins et al. 2018, DFF; Fel et al. 2023, CRAFT) factorizes a layer's
activations ``A`` (n, m), one row per image position and one column per channel, into
coefficients ``W`` (n, k) >= 0 and concept bases ``H`` (k, m) >= 0. HALS updates one column of
``W`` (one row of ``H``) at a time in closed form:

    W[:, j] <- max(0, W[:, j] + ((A H^T)[:, j] - W (H H^T)[:, j]) / (H H^T)[j, j])

and symmetrically for ``H``; the Frobenius error never increases. It is the coordinate descent
that scikit-learn's ``NMF(solver="cd")`` runs (which pytorch-grad-cam's DFF calls), here on the
device of the activations, with the error read from the k x k Gram matrices (no n x m residual
per iteration):

    ||A - W H||^2 = ||A||^2 - 2 <H, W^T A> + <W^T W, H H^T>

Start: NNDSVDa (Boutsidis & Gallopoulos 2008; deterministic, zeros filled with the mean) or
seeded random values as scikit-learn draws them. The run stops when an iteration lowers the error
by less than ``tol`` of the error (on average over 10 iterations), or after ``max_iter``
iterations. With ``bases`` given, only ``W`` is fitted: the coefficients of new activations on
known concepts (CRAFT's ``transform``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ...errors import BadArgument

Init = Literal["nndsvda", "random"]

CHECK_EVERY = 10
"""Convergence is judged on the error's fall over this many iterations (as scikit-learn does)."""


@dataclass(frozen=True)
class Factorization:
    """``matrix ~= coefficients @ bases``; bases rows have unit norm, sorted by total coefficient."""

    coefficients: Tensor
    """(n, k) >= 0."""
    bases: Tensor
    """(k, m) >= 0, each row of norm 1 (an all-zero row for a concept that died)."""
    error: float
    """Frobenius norm ||A - W H||."""
    relative_error: float
    """``error / ||A||``."""
    iterations: int
    converged: bool


def _nndsvda(a: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """NNDSVD start (Boutsidis & Gallopoulos 2008, Table 1), zeros replaced by the mean of ``a``.

    The singular vectors come from the m x m Gram matrix (m = channels, small) in float64."""
    gram = (a.T @ a).double()
    values, vectors = torch.linalg.eigh(gram)
    order = values.flip(0)[:rank].clamp_min(0)
    v = vectors.flip(1)[:, :rank]  # (m, k)
    s = order.sqrt()
    u = (a.double() @ v) / s.clamp_min(1e-30)  # (n, k)
    up, un, vp, vn = u.clamp_min(0), (-u).clamp_min(0), v.clamp_min(0), (-v).clamp_min(0)
    pos = up.norm(dim=0) * vp.norm(dim=0)
    neg = un.norm(dim=0) * vn.norm(dim=0)
    take = pos >= neg
    uu, vv = torch.where(take, up, un), torch.where(take, vp, vn)
    sigma = torch.where(take, pos, neg)
    uu = uu / uu.norm(dim=0).clamp_min(1e-30)
    vv = vv / vv.norm(dim=0).clamp_min(1e-30)
    scale = (s * sigma).sqrt()
    w, h = (uu * scale).to(a.dtype), (vv * scale).T.contiguous().to(a.dtype)
    mean = a.mean()
    return torch.where(w > 0, w, mean), torch.where(h > 0, h, mean)


def _random(a: Tensor, rank: int, seed: int) -> tuple[Tensor, Tensor]:
    """scikit-learn's random start: |N(0, 1)| scaled by sqrt(mean(A) / k)."""
    gen = torch.Generator().manual_seed(seed)
    avg = (a.mean() / rank).sqrt()
    w = torch.randn(a.shape[0], rank, generator=gen).abs().to(a) * avg
    h = torch.randn(rank, a.shape[1], generator=gen).abs().to(a) * avg
    return w, h


def _sweep(factor: Tensor, cross: Tensor, gram: Tensor) -> None:
    """One HALS pass over the columns of ``factor`` (n, k) in place: the least-squares optimum of
    each column with the others fixed, clipped at 0. ``cross`` is A H^T (n, k), ``gram`` H H^T."""
    for j in range(factor.shape[1]):
        diag = gram[j, j]
        if diag <= 0:
            continue
        step = (cross[:, j] - factor @ gram[:, j]) / diag
        factor[:, j] = (factor[:, j] + step).clamp_min(0)


def _error(norm2: Tensor, w: Tensor, h: Tensor, wta: Tensor) -> float:
    """||A - W H|| from the Gram matrices; ``wta`` is W^T A for the current ``w``. Summed in
    float64: the three terms nearly cancel when the fit is good."""
    w, h, wta = w.double(), h.double(), wta.double()
    value = norm2 - 2 * (h * wta).sum() + ((w.T @ w) * (h @ h.T)).sum()
    return float(value.clamp_min(0).sqrt())


def check_matrix(matrix: Tensor, rank: int) -> None:
    """Refuse in one line what cannot be factorized at this rank."""
    if matrix.ndim != 2:
        raise BadArgument(f"NMF needs a (rows, columns) matrix, got shape {tuple(matrix.shape)}")
    n, m = matrix.shape
    if not 1 <= rank <= min(n, m):
        raise BadArgument(f"k={rank} concepts from {m} channels and {n} positions: give k between "
                          f"1 and {min(n, m)}")
    if not bool(torch.isfinite(matrix).all()) or bool((matrix < 0).any()):
        raise BadArgument("NMF needs finite, non-negative activations (clamp them at 0 first)")


@torch.no_grad()
def nmf(matrix: Tensor, rank: int, *, max_iter: int = 1000, tol: float = 1e-7, seed: int = 0,
        init: Init = "nndsvda", bases: Tensor | None = None) -> Factorization:
    """Factorize ``matrix`` (n, m) >= 0 as ``W (n, k) @ H (k, m)`` (see the module notes).

    Args:
        rank: k, the number of concepts.
        max_iter: most HALS iterations; ``tol``: stop when one lowers the error by less than this
            fraction of it.
        seed: the random start's generator (``init="random"``).
        bases: fixed concept bases (k, m); then only the coefficients are fitted.
    """
    check_matrix(matrix, rank if bases is None else bases.shape[0])
    if max_iter < 1 or not tol >= 0:
        raise BadArgument(f"max_iter={max_iter}, tol={tol}: give max_iter >= 1 and tol >= 0")
    a = matrix.float()
    norm2 = (a.double() ** 2).sum()
    if bases is not None:
        h = bases.to(a).clone()
        if h.ndim != 2 or h.shape[1] != a.shape[1]:
            raise BadArgument(f"bases {tuple(h.shape)} do not match {a.shape[1]} channels")
        hht = h @ h.T
        w = (a @ h.T @ torch.linalg.pinv(hht)).clamp_min(0)
    elif init == "nndsvda":
        w, h = _nndsvda(a, rank)
    elif init == "random":
        w, h = _random(a, rank, seed)
    else:
        raise BadArgument(f"init={init!r}: choose 'nndsvda' or 'random'")
    previous, converged, iterations = float("inf"), False, 0
    for iterations in range(1, max_iter + 1):
        hht = h @ h.T
        _sweep(w, a @ h.T, hht)
        wta = w.T @ a
        if bases is None:
            wtw = w.T @ w
            ht = h.T.contiguous()
            _sweep(ht, wta.T, wtw)
            h = ht.T.contiguous()
        err = _error(norm2, w, h, wta)
        if iterations % CHECK_EVERY == 0:  # a window: float32 updates jitter by single steps
            if previous - err <= CHECK_EVERY * tol * max(err, 1e-30):
                converged = True
                break
            previous = err
    return _normalized(w, h, err, float(norm2.sqrt()), iterations, converged, sort=bases is None)


def _normalized(w: Tensor, h: Tensor, err: float, norm: float, iterations: int, converged: bool,
                *, sort: bool) -> Factorization:
    """Bases of unit norm (coefficients scaled to match), most used concept first."""
    if sort:
        scale = h.norm(dim=1)
        w, h = w * scale, h / scale.clamp_min(1e-30)[:, None]
        order = w.sum(0).argsort(descending=True)
        w, h = w[:, order], h[order]
    return Factorization(w, h, err, err / norm if norm > 0 else 0.0, iterations, converged)
