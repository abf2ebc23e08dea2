"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci 2022, "A Consistent and
Efficient Evaluation Strategy for Attribution Methods", ICML), with noisy linear imputation.

Deleting pixels to a constant leaks the deletion mask's shape to the model: the model can read
*where* pixels were removed, whatever their value. ROAD fills each removed pixel instead with the
weighted mean of its 8 neighbours (weight 1/6 for the 4 direct ones, 1/12 for the diagonals,
weights renormalized at the image border), solved jointly for all removed pixels of an image (a
sparse linear system, Sec. 4.2), plus Gaussian noise of std ``noise`` (in model-input units).

Pixels are ranked by the map (channels summed, resized to the input); at each of ``steps``
levels the fraction ``(k + 1/2) / steps`` of them (``steps=50``: 1%, 3%, ..., 99%, Quantus's
default percentages) is removed, most relevant first (MoRF) or least relevant first (LeRF). The
score of an image is the fraction of levels at which the model still predicts the target class
(its top-1 equals the target): the paper's accuracy curve per image, averaged over levels, so
the mean over images is the mean of the paper's (and Quantus's) accuracy per level. A faithful
map makes MoRF low (lower is better) and LeRF high (higher is better). It assumes the target is
what the model predicts on the unchanged image (evaluate's "top1") -- otherwise both start at 0.

The system is solved by conjugate gradients preconditioned by one multigrid V-cycle (damped
Jacobi on each grid, 2x2 coarsening down to 8 pixels a side, a coarse cell active where all its
pixels are unknown: symmetric, so CG stays CG), started from the same fill solved at half
resolution (full multigrid), until every row's residual is below ``tol`` (1e-3) of its
right-hand side. At 224x224 that is 5-8 iterations, for blobs (a CAM's top pixels) and for
scattered holes alike, and the fill is within about 7e-4 (mean; 3e-3 at most) of the direct
sparse solve Quantus makes -- ten times below the default noise -- so the default gives
Quantus's accuracies (tests/zoo/test_metrics_quantus.py, noise 0). The earlier 2 plain CG steps
per level were cheaper but off by 0.04 on average, which flipped 3% of the scores. Exactness
costs: at 224x224 about 6 V-cycles per grid, several times EfficientNet-Lite0's forward per row
on CPU (benchmarks/metrics_bench.py, goal road-floor, missed); ``tol`` trades it back. All rows
(image, level) are built chunk by chunk and scored on the inference fast path, as the deletion
curve is. Quantus removes pixels at ``int(N * p / 100)``; here ``floor(N * (2k + 1) / (2 steps))``,
the same count. pytorch-grad-cam's ROAD scores the change of the target's probability instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import BadArgument, check_choice, check_positive
from ...model import FastForward, Model, default_batch_size, guarded
from .faithfulness import pixel_ranks, reduce_maps

Order = Literal["morf", "lerf"]
_W_EDGE, _W_CORNER = 1 / 6, 1 / 12
_COARSEST = 8


def _box121(x: Tensor) -> Tensor:
    """(N, 1, H, W) -> ``x`` filtered by ``[1, 2, 1] outer [1, 2, 1]`` (zero outside the image).

    Two separable passes of shifted in-place adds: several times faster on CPU than a 3x3
    convolution of one channel. The imputation's neighbour weights are ``(box121 - 4 x) / 12``.
    """
    v = x * 2
    v[..., 1:, :] += x[..., :-1, :]
    v[..., :-1, :] += x[..., 1:, :]
    h = v * 2
    h[..., 1:] += v[..., :-1]
    h[..., :-1] += v[..., 1:]
    return h


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return torch.linalg.vecdot(a.flatten(1), b.flatten(1))


_OMEGA, _COARSE_SWEEPS = 0.8, 16


class _Level:
    """One grid of the multigrid hierarchy: the operator restricted to its unknown pixels, the
    damped-Jacobi smoother, and the next coarser grid (2x2 cells, active where every child is)."""

    def __init__(self, unknown: Tensor) -> None:
        self.mask = unknown.float()
        diag = (_box121(torch.ones_like(self.mask[:1])) - 4) / 12  # in-image neighbour weights
        self.shifted = diag + 1 / 3
        self.smooth = _OMEGA * self.mask / diag
        height, width = unknown.shape[-2:]
        self.pad = (0, width % 2, 0, height % 2)
        # a coarse cell corrects only where all its pixels are unknown: a cell with a known pixel
        # is pinned there, which a coarse unknown would not see (scattered holes then stall CG)
        self.coarse = (_Level(F.max_pool2d(F.pad(1 - self.mask, self.pad), 2) == 0)
                       if min(height, width) > _COARSEST else None)

    def apply(self, v: Tensor) -> Tensor:
        """A v, for v zero outside the unknown pixels."""
        return self.mask * (self.shifted * v - _box121(v) / 12)

    def _sweep(self, v: Tensor, r: Tensor) -> Tensor:
        return torch.addcmul(v, self.smooth, r - self.apply(v))

    def precondition(self, r: Tensor) -> Tensor:
        """One symmetric V-cycle on A e = r from e = 0: a fixed SPD operator, so CG stays CG."""
        v = self.smooth * r
        if self.coarse is None:
            for _ in range(_COARSE_SWEEPS - 1):
                v = self._sweep(v, r)
            return v
        height, width = r.shape[-2:]
        restricted = F.avg_pool2d(F.pad(r - self.apply(v), self.pad), 2) * 4  # sum = P^T
        e = self.coarse.precondition(restricted)
        upsampled = F.interpolate(e, scale_factor=2.0, mode="nearest")[..., :height, :width]
        v = torch.addcmul(v, self.mask, upsampled)
        return self._sweep(v, r)


def _solve(x: Tensor, unknown: Tensor, tol: float, iterations: int) -> Tensor:
    """Harmonic fill: ``x`` with its ``unknown`` pixels replaced by the linear system's solution.

    ``x``: (N, 1, H, W) float32 (one channel per row); ``unknown``: (N, 1, H, W) bool. Row i of
    the system: ``w_i u_i - sum_j w_ij u_j = sum_k w_ik x_k`` over unknown neighbours j and known
    neighbours k, ``w_i`` the weight of i's neighbours inside the image. Conjugate gradients
    preconditioned by a multigrid V-cycle, until every row's residual is below ``tol`` times
    its right-hand side (or ``iterations`` steps).
    """
    level = _Level(unknown)
    known_part = x * ~unknown
    b = level.mask * (_box121(known_part) - 4 * known_part) / 12
    height, width = x.shape[-2:]
    if min(height, width) > _COARSEST:  # start from the half-resolution fill (full multigrid)
        weight = F.avg_pool2d(F.pad((~unknown).to(x.dtype), level.pad), 2)
        coarse = F.avg_pool2d(F.pad(known_part, level.pad), 2) / weight.clamp(min=1e-12)
        start = _solve(coarse, weight == 0, tol, iterations)
        u = level.mask * F.interpolate(start, size=(height, width), mode="bilinear", align_corners=False)
        r = b - level.apply(u)
    else:
        u, r = torch.zeros_like(x), b
    z = level.precondition(r)
    p, rz = z, _dot(r, z)
    goal, tiny = tol ** 2 * _dot(b, b), torch.finfo(x.dtype).tiny
    for _ in range(iterations):
        if bool((_dot(r, r) <= goal).all()):
            break
        ap = level.apply(p)
        alpha = (rz / _dot(p, ap).clamp(min=tiny)).view(-1, 1, 1, 1)
        u = torch.addcmul(u, alpha, p)
        r = torch.addcmul(r, alpha, ap, value=-1)
        z = level.precondition(r)
        rz_next = _dot(r, z)
        p = torch.addcmul(z, (rz_next / rz.clamp(min=tiny)).view(-1, 1, 1, 1), p)
        rz = rz_next
    return torch.where(unknown, u, x)


def impute(x: Tensor, removed: Tensor, *, noise: float = 0.01, generator: torch.Generator | None = None,
           tol: float = 1e-3, iterations: int = 50) -> Tensor:
    """Noisy linear imputation: (N, C, H, W) images with the ``removed`` (N, 1, H, W) pixels
    filled from their neighbours (every channel alike) plus N(0, noise^2) noise; see the module doc.

    ``tol``: stop when every row's residual is below this fraction of its right-hand side;
    ``iterations``: at most this many preconditioned CG steps per resolution.
    """
    n, c, h, w = x.shape
    rows = x.detach().float().reshape(n * c, 1, h, w)
    unknown = removed.bool().expand(n, c, h, w).reshape(n * c, 1, h, w)
    filled = _solve(rows, unknown, tol, iterations).reshape(n, c, h, w)
    if noise:
        jitter = torch.randn(filled.shape, generator=generator).to(filled.device)
        filled = torch.where(removed.bool(), filled + noise * jitter, filled)
    return filled.to(x.dtype)


def removal_counts(pixels: int, steps: int) -> Tensor:
    """(steps,) pixels removed at each level: ``floor(pixels * (2k + 1) / (2 steps))``."""
    k = torch.arange(steps)
    return torch.div(pixels * (2 * k + 1), 2 * steps, rounding_mode="floor")


def road(
    model: Model,
    inputs: Tensor,
    maps: Tensor,
    targets: Tensor,
    *,
    order: Order = "morf",
    steps: int = 50,
    noise: float = 0.01,
    seed: int = 0,
    tol: float = 1e-3,
    iterations: int = 50,
    batch_size: int | None = None,
    fast: FastForward | None = None,
) -> Tensor:
    """(B,) the fraction of removal levels at which the model still predicts ``targets`` (B,).

    ``inputs``: (B, C, H, W) model inputs; ``maps``: (B, C', h, w) at any resolution.
    """
    check_choice("order", order, Order)
    check_positive("steps", steps, integer=True)
    if not isinstance(inputs, Tensor) or inputs.ndim != 4:
        raise BadArgument("inputs must be a (B, C, H, W) batch from model.preprocess")
    size = (inputs.shape[-2], inputs.shape[-1])
    m = reduce_maps(maps, "sum", size).to(inputs.device)
    if m.shape[0] != inputs.shape[0]:
        raise BadArgument(f"{m.shape[0]} maps for {inputs.shape[0]} inputs: give one map per input")
    ranks = pixel_ranks(m if order == "morf" else -m, seed)
    counts = removal_counts(ranks.shape[1], int(steps)).to(inputs.device)
    batch = int(batch_size) if batch_size is not None else default_batch_size(inputs.device)
    fast = fast if fast is not None else FastForward(model)
    generator = torch.Generator().manual_seed(seed)
    inputs, total = inputs.detach(), inputs.shape[0] * int(steps)

    def chunks() -> Iterator[Tensor]:
        for start in range(0, total, batch):
            rows = torch.arange(start, min(start + batch, total), device=inputs.device)
            b, k = rows // steps, rows % steps
            removed = (ranks[b] < counts[k, None]).view(-1, 1, *size)
            yield impute(inputs[b], removed, noise=noise, generator=generator, tol=tol,
                         iterations=iterations)

    with guarded(model):
        predicted = fast.scores(chunks(), lambda logits: logits.argmax(-1).float(), total=total)
    kept = predicted.view(-1, steps).to(targets.device) == targets.view(-1, 1).float()
    return kept.float().mean(1)
