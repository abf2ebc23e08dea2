"""Concept activation vectors (Kim et al. 2018, Sec. 3.1): one linear classifier per concept pair.

A CAV is the normal of an L2-regularized logistic regression that separates a layer's flattened
activations of a concept's examples (label 1) from those of a random set (label 0):

    min_{w,b}  mean_i log(1 + exp(-y_i (w . z_i + b))) + alpha / 2 ||w||^2,   y in {-1, +1}.

TCAV fits dozens of these per layer (every concept and the reference random set against each
random set), each on a few dozen examples of thousands of features. They are solved together:
the optimum lies in the span of the training activations (representer theorem), so each
problem is solved for dual coefficients ``c`` (``w = Z^T c``) by batched Newton steps on
n + 1 unknowns that only need the Gram matrix ``K = Z Z^T``. The cost is one batched Gram
product per layer and a few dozen (n + 1)-square solves.

Examples are split per set into a fitting part and a held-out part (a seeded permutation,
``test_fraction`` held out, at least one of each side); the accuracy on the held-out part is
the CAV's accuracy, as Captum and the paper report it.

Shapes: activations (M, F) per layer; pairs index into them; CAVs (P, F) unit vectors, biases (P,).
The Newton steps of all layers run as one batch of (layers x pairs) problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import BadArgument

NEWTON_STEPS = 30


@dataclass(frozen=True)
class Pair:
    """One CAV's training sets: row indices of the concept's examples and of the random set's."""

    positive: Tensor
    negative: Tensor


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


def fit_cavs(activations: Tensor | Sequence[Tensor], pairs: Sequence[Pair], *, alpha: float = 0.01,
             test_fraction: float = 1 / 3, seed: int = 0) -> list[Cavs]:
    """Fit one logistic-regression CAV per pair on each layer's ``activations`` (M, F_l).

    Every layer uses the same split of each pair (seeded by ``seed``), and the Newton steps of
    all layers and pairs run as one batch; returns one :class:`Cavs` per layer.
    """
    if not 0 < test_fraction < 1:
        raise BadArgument(f"test_fraction={test_fraction}: use a value in (0, 1)")
    if alpha <= 0:
        raise BadArgument(f"alpha={alpha}: the CAV's L2 weight must be positive")
    layers = [activations] if isinstance(activations, Tensor) else list(activations)
    gen = torch.Generator().manual_seed(seed)
    fit_rows, fit_y, test_rows, test_y = [], [], [], []
    for pair in pairs:
        parts = [split(len(side), test_fraction, gen) for side in (pair.positive, pair.negative)]
        fit_rows.append(torch.cat([pair.positive[parts[0][0]], pair.negative[parts[1][0]]]))
        fit_y.append(torch.cat([torch.ones(len(parts[0][0])), -torch.ones(len(parts[1][0]))]))
        test_rows.append(torch.cat([pair.positive[parts[0][1]], pair.negative[parts[1][1]]]))
        test_y.append(torch.cat([torch.ones(len(parts[0][1])), -torch.ones(len(parts[1][1]))]))
    rows, y, weight = _padded(fit_rows, fit_y)
    flat = [z.reshape(len(z), -1).float() for z in layers]
    zp = [z[rows] for z in flat]  # (P, n, F_l); padded rows repeat row 0 and weigh nothing
    gram = torch.cat([(z @ z.transpose(1, 2)).double() for z in zp])  # (L P, n, n)
    count = len(pairs)
    c, b = _logistic(gram, y.double().repeat(len(layers), 1), weight.double().repeat(len(layers), 1), alpha)
    out = []
    for li, (z, zl) in enumerate(zip(flat, zp)):
        w = (c[li * count:(li + 1) * count].float()[:, None, :] @ zl)[:, 0]  # w = Z^T c
        bias = b[li * count:(li + 1) * count].float()
        everything = z @ w.T + bias  # (M, P): every example scored by every CAV, one product
        accuracy = torch.stack([((everything[r, p] > 0) == (t > 0)).float().mean()
                                for p, (r, t) in enumerate(zip(test_rows, test_y))])
        out.append(Cavs(w / w.norm(dim=1, keepdim=True).clamp_min(1e-30), w, bias, accuracy))
    return out


def _padded(rows: list[Tensor], labels: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Stack ragged problems to (P, n): indices (pad 0), labels (pad 0), sample weights 1/n_p."""
    n = max(len(r) for r in rows)
    out = torch.zeros(len(rows), n, dtype=torch.long)
    y = torch.zeros(len(rows), n)
    weight = torch.zeros(len(rows), n)
    for p, (r, t) in enumerate(zip(rows, labels)):
        out[p, :len(r)], y[p, :len(r)], weight[p, :len(r)] = r, t, 1.0 / len(r)
    return out, y, weight


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
