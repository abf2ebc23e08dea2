"""Concept activation vectors (Kim et al. 2018, Sec. 3.1): one linear classifier per concept pair.

A CAV is the normal of an L2-regularized logistic regression that separates a layer's flattened
activations of a concept's examples (label 1) from those of a random set (label 0):

    min_{w,b}  mean_i log(1 + exp(-y_i (w . z_i + b))) + alpha / 2 ||w||^2,   y in {-1, +1}.

TCAV fits dozens of these per layer (every concept and the reference random set against each
random set), each on a few dozen examples of thousands of features. They are solved together:
the optimum lies in the span of the training activations (representer theorem), so each
problem is solved for dual coefficients ``c`` (``w = Z^T c``) by batched Newton steps on n + 1
unknowns that only need the Gram matrix ``K = Z Z^T``. The pairs share their sets, so the Gram
blocks are computed once per set and per pair of sets that meet, not once per problem; the
Newton steps of all layers and pairs run as one batch.

Each set is split once into a fitting part and a held-out part (a seeded permutation,
``test_fraction`` held out, at least one example in each part); the accuracy on the held-out
parts of a pair is its CAV's accuracy, as Captum and the paper report it.

Shapes: activations (M, F) per layer; sets are row indices into them; pairs are (concept set,
random set) indices; CAVs (P, F) unit vectors, biases (P,).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import BadArgument

NEWTON_STEPS = 30


@dataclass
class Cavs:
    """The fitted vectors of P pairs at one layer."""

    vectors: Tensor
    """(P, F) unit vectors pointing towards the concept."""
    weights: Tensor
    """(P, F) the classifiers' own weights (``vectors`` times their norm)."""
    biases: Tensor
    """(P,) intercepts of the classifiers."""
    accuracy: Tensor
    """(P,) accuracy on each pair's held-out examples."""


def split(count: int, test_fraction: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(fit, held-out) indices of ``count`` examples: a seeded permutation, both parts non-empty."""
    order = torch.randperm(count, generator=gen)
    held = min(max(1, round(count * test_fraction)), count - 1)
    return order[held:], order[:held]


def fit_cavs(activations: Tensor | Sequence[Tensor], sets: Sequence[Tensor],
             pairs: Sequence[tuple[int, int]], *, alpha: float = 0.01, test_fraction: float = 1 / 3,
             seed: int = 0) -> list[Cavs]:
    """Fit one logistic-regression CAV per pair (positive set, negative set) on each layer's
    ``activations`` (M, F_l); ``sets`` hold row indices. Returns one :class:`Cavs` per layer."""
    if not 0 < test_fraction < 1:
        raise BadArgument(f"test_fraction={test_fraction}: use a value in (0, 1)")
    if alpha <= 0:
        raise BadArgument(f"alpha={alpha}: the CAV's L2 weight must be positive")
    layers = [activations] if isinstance(activations, Tensor) else list(activations)
    gen = torch.Generator().manual_seed(seed)
    parts = [split(len(rows), test_fraction, gen) for rows in sets]
    fit = [rows[part[0]] for rows, part in zip(sets, parts)]
    held = [rows[part[1]] for rows, part in zip(sets, parts)]
    n = max(len(fit[a]) + len(fit[b]) for a, b in pairs)
    y = torch.zeros(len(pairs), n, dtype=torch.float64)
    weight = torch.zeros(len(pairs), n, dtype=torch.float64)
    for p, (i, j) in enumerate(pairs):
        na, nb = len(fit[i]), len(fit[j])
        y[p, :na], y[p, na:na + nb] = 1.0, -1.0
        weight[p, :na + nb] = 1.0 / (na + nb)
    flat = [z.reshape(len(z), -1).float() for z in layers]
    fitted = [[z[rows] for rows in fit] for z in flat]  # each set's rows gathered once per layer
    gram = torch.cat([_pair_grams(zf, pairs, n) for zf in fitted])
    c, b = _logistic(gram, y.repeat(len(layers), 1), weight.repeat(len(layers), 1), alpha)
    count = len(pairs)
    out = []
    for li, (z, zf) in enumerate(zip(flat, fitted)):
        coef, bias = c[li * count:(li + 1) * count].float(), b[li * count:(li + 1) * count].float()
        w = torch.zeros(count, z.shape[1])
        for s, rows in enumerate(zf):  # w = Z^T c, one product per set and side
            for side in (0, 1):
                used = [p for p, pair in enumerate(pairs) if pair[side] == s]
                if used:  # the negative side's coefficients follow the positive side's
                    at = torch.tensor(used)
                    starts = torch.tensor([len(fit[pairs[p][0]]) if side else 0 for p in used])
                    w[at] += coef[at[:, None], starts[:, None] + torch.arange(len(rows))] @ rows
        scores = [z[rows] @ w.T + bias for rows in held]  # (held_s, P) per set
        right = [torch.cat([scores[i][:, p] > 0, scores[j][:, p] <= 0]) for p, (i, j) in enumerate(pairs)]
        accuracy = torch.stack([r.float().mean() for r in right])
        out.append(Cavs(w / w.norm(dim=1, keepdim=True).clamp_min(1e-30), w, bias, accuracy))
    return out


def _pair_grams(fit: list[Tensor], pairs: Sequence[tuple[int, int]], n: int) -> Tensor:
    """(P, n, n) double Gram matrices of the pairs' fitting rows (positive, then negative, then
    zero padding), from one block per set and one per pair of sets."""
    own = {s: (fit[s] @ fit[s].T).double() for s in {i for pair in pairs for i in pair}}
    cross: dict[tuple[int, int], Tensor] = {}
    for a in dict.fromkeys(a for a, _ in pairs):  # each positive set against all its partners at once
        partners = list(dict.fromkeys(b for aa, b in pairs if aa == a))
        block = (fit[a] @ torch.cat([fit[b] for b in partners]).T).double()
        cross.update(zip(((a, b) for b in partners), block.split([len(fit[b]) for b in partners], 1)))
    gram = torch.zeros(len(pairs), n, n, dtype=torch.float64)
    for p, (a, b) in enumerate(pairs):
        na, nb = len(fit[a]), len(fit[b])
        gram[p, :na, :na], gram[p, na:na + nb, na:na + nb] = own[a], own[b]
        gram[p, :na, na:na + nb] = cross[(a, b)]
        gram[p, na:na + nb, :na] = cross[(a, b)].T
    return gram


def _logistic(gram: Tensor, y: Tensor, weight: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Weighted L2 logistic regression of Q problems given by their Gram matrices (Q, n, n).

    Returns dual coefficients (Q, n) and biases (Q,). With ``w = Z^T c``, ``f = K c + b`` and
    ``r = -weight * y * sigmoid(-y f)``, the gradient is ``(K (r + alpha c), 1^T r)``; Newton's
    system with its first block row divided by ``K`` is
    ``[[D K + alpha I, D 1], [1^T D K, 1^T D 1]] (dc, db) = (r + alpha c, 1^T r)``, D the
    logistic curvature: (n + 1) unknowns per problem, whatever F is, and no factorization of K.
    """
    q, n = y.shape
    c = torch.zeros(q, n, dtype=gram.dtype)
    b = torch.zeros(q, dtype=gram.dtype)
    system = torch.zeros(q, n + 1, n + 1, dtype=gram.dtype)
    rhs = torch.zeros(q, n + 1, 1, dtype=gram.dtype)
    ridge = alpha * torch.eye(n, dtype=gram.dtype)
    for _ in range(NEWTON_STEPS):
        f = (gram @ c[..., None])[..., 0] + b[:, None]
        sigma = torch.sigmoid(-y * f)
        r = -weight * y * sigma
        d = weight * sigma * (1 - sigma)
        dk = d[..., None] * gram  # D K
        system[:, :n, :n] = dk + ridge
        system[:, :n, n] = d
        system[:, n, :n] = dk.sum(1)
        system[:, n, n] = d.sum(1) + 1e-12
        rhs[:, :n, 0] = r + alpha * c
        rhs[:, n, 0] = r.sum(1)
        step = torch.linalg.solve_ex(system, rhs)[0][..., 0]
        c, b = c - step[:, :n], b - step[:, n]
        if step.abs().max() < 1e-7 * (1 + c.abs().max()):  # quadratic convergence: one step past this
            break
    return c, b
