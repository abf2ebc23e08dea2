"""Perturbation budgets in pixel space, kept *exactly*: projection and 8-bit quantization.

An adversarial image ``x`` of an original ``o`` (both (B, 3, H, W) in [0, 1]) is within budget
when ``max |x - o| <= eps`` (L-inf) or ``||x - o||_2 <= eps`` (L2), evaluated as a user would:
in float32 on the tensors themselves. Rounding can break a naive projection by one ulp (``o +
eps`` minus ``o`` is not always ``eps`` in floating point), so every projection here ends with a
check in that very arithmetic and moves offending pixels toward ``o`` until it holds.

8-bit quantization (``round(255 x) / 255``, bitwise what :func:`convscope.load_image` returns for
a saved PNG) must also stay within budget: L-inf levels are limited and checked like above; L2
rounds to nearest and then truncates (toward ``o``) the pixels whose rounding cost the most
norm until the budget holds (truncation never increases any ``|x_i - o_i|``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Norm = Literal["linf", "l2"]
_L2_SHRINK = 1.0 - 1e-5  # the L2 projection aims just inside the sphere: float32 norms may err by ~1e-7


def norms(delta: Tensor) -> tuple[Tensor, Tensor]:
    """(L-inf, L2) norm of each perturbation (B, ...) in pixel units, in the perturbation's dtype.

    Measured in the same arithmetic as the budget checks (so ``linf <= eps`` holds exactly): an
    8-bit change of 4 levels is ``fl32(k/255) - fl32(j/255)``, which float64 would see as a hair
    above ``4/255`` although it is exactly four levels.
    """
    flat = delta.detach().flatten(1)
    return flat.abs().amax(1), flat.norm(dim=1)


def _fix_linf(x: Tensor, orig: Tensor, eps: float) -> Tensor:
    """Move pixels with ``|x - o| > eps`` (float32) toward ``o`` one ulp at a time (rarely > 1)."""
    for _ in range(8):
        bad = (x - orig).abs() > eps
        if not bad.any():
            return x
        x = torch.where(bad, torch.nextafter(x, orig), x)
    return torch.where((x - orig).abs() > eps, orig, x)


def _l2_scale(delta: Tensor, radius: float) -> Tensor:
    """Per-image factor min(1, radius / ||delta||) computed in float64, shape (B, 1, 1, 1)."""
    n = delta.double().flatten(1).norm(dim=1).clamp_min(1e-300)
    return (radius / n).clamp(max=1.0).to(delta.dtype).view(-1, *([1] * (delta.ndim - 1)))


def _fix_l2(x: Tensor, orig: Tensor, eps: float) -> Tensor:
    """Shrink any perturbation whose float32 (or float64) norm still exceeds ``eps``."""
    for _ in range(8):
        delta = x - orig
        over = (delta.flatten(1).norm(dim=1) > eps) | (delta.double().flatten(1).norm(dim=1) > eps)
        if not over.any():
            return x
        factor = torch.where(over, torch.tensor(0.999, dtype=x.dtype, device=x.device),
                             torch.tensor(1.0, dtype=x.dtype, device=x.device))
        x = (orig + delta * factor.view(-1, 1, 1, 1)).clamp(0, 1)
    return x


def project_to_budget(x: Tensor, orig: Tensor, eps: float, norm: Norm) -> Tensor:
    """Project ``x`` onto the ``eps``-ball around ``orig`` and onto [0, 1], exactly (see module doc).

    Clamping to [0, 1] after the ball projection keeps the ball: it only shrinks ``|x_i - o_i|``
    (the box contains ``o``).
    """
    delta = x - orig
    if norm == "linf":
        x = (orig + delta.clamp(-eps, eps)).clamp(0, 1)
        return _fix_linf(x, orig, eps)
    x = (orig + delta * _l2_scale(delta, eps * _L2_SHRINK)).clamp(0, 1)
    return _fix_l2(x, orig, eps)


def on_grid(x: Tensor) -> Tensor:
    """Round to the 8-bit grid ``k / 255`` (bitwise equal to a saved and reloaded PNG)."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def quantize(x: Tensor, orig: Tensor, eps: float, norm: Norm) -> Tensor:
    """The nearest 8-bit image to ``x`` that stays within budget around ``orig``.

    ``orig`` need not lie on the grid; if no grid point lies in the ball for some pixel (an
    off-grid original with ``eps < 1/255``), that pixel takes the grid value nearest ``orig`` and
    the budget may not hold: quantize the original first (``on_grid``) to avoid that.
    """
    q = on_grid(x)
    if norm == "linf":
        for _ in range(4):  # step offending pixels one level toward the original
            bad = (q - orig).abs() > eps
            if not bad.any():
                break
            q = torch.where(bad, on_grid(q - torch.sign(q - orig) / 255), q)
        return torch.where((q - orig).abs() > eps, on_grid(orig), q)
    return _quantize_l2(q, x, orig, eps)


def _quantize_l2(q: Tensor, x: Tensor, orig: Tensor, eps: float) -> Tensor:
    """Undo the most costly round-ups (rounded away from ``orig``) until the L2 budget holds."""
    b = q.shape[0]
    toward = on_grid(orig + torch.trunc((x - orig) * 255) / 255)  # never farther than x
    toward = torch.where((toward - orig).abs() > (x - orig).abs(), q, toward)
    # cost of keeping q instead of toward, in squared norm (float64)
    dq, dt = (q - orig).double().flatten(1), (toward - orig).double().flatten(1)
    saving = dq.pow(2) - dt.pow(2)  # > 0 where truncating helps
    excess = dq.pow(2).sum(1) - (eps * _L2_SHRINK) ** 2
    order = saving.argsort(dim=1, descending=True)
    sorted_saving = saving.gather(1, order).clamp_min(0)
    cumulative = sorted_saving.cumsum(1)
    # truncate the k largest savings, k = first index where the cumulative saving covers the excess
    k = (cumulative < excess[:, None]).sum(1) + 1
    k = torch.where(excess > 0, k.clamp(max=saving.shape[1]), torch.zeros_like(k))
    choose = torch.arange(saving.shape[1], device=q.device)[None] < k[:, None]
    mask = torch.zeros_like(choose).scatter(1, order, choose).view_as(q)
    out = torch.where(mask, toward, q)
    return _fix_l2_grid(out, orig, eps, b)


def _fix_l2_grid(q: Tensor, orig: Tensor, eps: float, b: int) -> Tensor:
    """Last resort for float32 rounding: move the largest remaining pixel a level toward orig."""
    for _ in range(16):
        delta = q - orig
        over = (delta.flatten(1).norm(dim=1) > eps) | (delta.double().flatten(1).norm(dim=1) > eps)
        if not over.any():
            return q
        flat = delta.abs().flatten(1)
        idx = flat.argmax(1)
        step = torch.zeros_like(flat).scatter(1, idx[:, None], 1.0).view_as(q) * over.view(b, 1, 1, 1)
        q = torch.where(step > 0, on_grid(q - torch.sign(delta) / 255), q)
    return q
