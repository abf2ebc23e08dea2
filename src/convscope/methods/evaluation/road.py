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

The system is solved by conjugate gradients with the Jacobi preconditioner, started from the
solution of the same problem at half resolution (recursively: a cascadic multigrid). The default,
2 iterations per level, is chosen for speed (the imputation then costs about a third of the
forwards on EfficientNet-Lite0): the fill is close to the exact one (mean error about 0.01 in
model-input units at 90% removal) but not equal, and a prediction near its decision boundary can
flip (on a 20x20 toy model 7 of 300 rows, 3% of the score; on Lite0 at 224x224, 2 of 40 LeRF
rows). ``iterations=32, tol=1e-6`` solves the system to float precision and gives Quantus's
accuracies exactly (tests/zoo/test_metrics_quantus.py). All rows
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


def _solve(x: Tensor, unknown: Tensor, tol: float, iterations: int) -> Tensor:
    """Harmonic fill: ``x`` with its ``unknown`` pixels replaced by the linear system's solution.

    ``x``: (N, 1, H, W) float32 (one channel per row); ``unknown``: (N, 1, H, W) bool. Row i of
    the system: ``w_i u_i - sum_j w_ij u_j = sum_k w_ik x_k`` over unknown neighbours j and known
    neighbours k, ``w_i`` the weight of i's neighbours inside the image.
    """
    height, width = x.shape[-2:]
    known = ~unknown
    if min(height, width) > _COARSEST:  # start from the half-resolution solution
        weight = F.avg_pool2d(known.to(x.dtype), 2, ceil_mode=True)
        coarse = F.avg_pool2d(x * known, 2, ceil_mode=True) / weight.clamp(min=1e-12)
        start = _solve(coarse, weight == 0, tol, iterations)
        guess = F.interpolate(start, size=(height, width), mode="bilinear", align_corners=False)
        steps = iterations
    else:
        seen = known.to(x.dtype).sum((2, 3), keepdim=True).clamp(min=1)
        guess, steps = ((x * known).sum((2, 3), keepdim=True) / seen).expand_as(x), 4 * height * width
    mask, tiny = unknown.to(x.dtype), torch.finfo(x.dtype).tiny
    diag = (_box121(torch.ones_like(x[:1])) - 4) / 12  # the weights that fall inside the image
    shifted, inverse = diag + 1 / 3, 1 / diag

    def apply(v: Tensor) -> Tensor:  # A v for v zero on the known pixels
        return mask * (shifted * v - _box121(v) / 12)

    known_part = x * known
    b = mask * (_box121(known_part) - 4 * known_part) / 12
    u = guess * mask
    r = b - apply(u)
    z = r * inverse
    p, rz = z, _dot(r, z)
    goal = tol ** 2 * _dot(b, b * inverse)
    for _ in range(steps):
        if bool((rz <= goal).all()):
            break
        ap = apply(p)
        alpha = (rz / _dot(p, ap).clamp(min=tiny)).view(-1, 1, 1, 1)
        u = torch.addcmul(u, alpha, p)
        r = torch.addcmul(r, alpha, ap, value=-1)
        z = r * inverse
        rz_next = _dot(r, z)
        p = torch.addcmul(z, (rz_next / rz.clamp(min=tiny)).view(-1, 1, 1, 1), p)
        rz = rz_next
    return torch.where(unknown, u, x)


def impute(x: Tensor, removed: Tensor, *, noise: float = 0.01, generator: torch.Generator | None = None,
           tol: float = 1e-4, iterations: int = 2) -> Tensor:
    """Noisy linear imputation: (N, C, H, W) images with the ``removed`` (N, 1, H, W) pixels
    filled from their neighbours (every channel alike) plus N(0, noise^2) noise; see the module doc.

    ``iterations``: conjugate-gradient steps at each resolution level (the coarsest, at most
    8 pixels a side, runs to ``tol``);
    ``tol``: stop early when every image's relative residual is below it.
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
    tol: float = 1e-4,
    iterations: int = 2,
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
