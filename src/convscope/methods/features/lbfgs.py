"""L-BFGS for :func:`~.optimize.optimize_images` (``optimizer="lbfgs"``).

Limited-memory BFGS (Nocedal & Wright 2006, Algorithm 7.4 two-loop recursion and 7.5) with a
backtracking Armijo line search (Algorithm 3.1), on the concatenation of the parameterization's
leaves. Gatys et al. 2016 optimize style transfer with L-BFGS: on such smooth, deterministic
losses it converges in far fewer steps than Adam. It assumes the loss is deterministic (no
random transforms): the line search compares values at different points.

Written out rather than ``torch.optim.LBFGS`` for the same reason as ``Adam`` (the first
``torch.optim`` construction imports ``torch._dynamo``: seconds of start-up), and to make one
"step" one search direction whose cost is one evaluation plus any backtracking.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Evaluate = Callable[[], Tensor]
"""Computes the (B,) losses at the current leaves, differentiably."""


class LBFGS:
    """``step(evaluate) -> losses`` at the point the step started from (like Adam's loop)."""

    def __init__(self, leaves: Sequence[Tensor], lr: float = 1.0, history: int = 10,
                 c1: float = 1e-4, max_backtracks: int = 12) -> None:
        self.leaves, self.lr, self.history = list(leaves), lr, history
        self.c1, self.max_backtracks = c1, max_backtracks
        self.s: list[Tensor] = []
        self.y: list[Tensor] = []
        self._cache: tuple[Tensor, Tensor, Tensor] | None = None  # (point, losses, grad)

    def _flat(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.leaves])

    @torch.no_grad()
    def _set(self, flat: Tensor) -> None:
        offset = 0
        for p in self.leaves:
            p.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()

    def _evaluate(self, evaluate: Evaluate) -> tuple[Tensor, Tensor]:
        losses = evaluate()
        grads = torch.autograd.grad(losses.sum(), self.leaves)
        return losses.detach(), torch.cat([g.reshape(-1) for g in grads])

    def _direction(self, g: Tensor) -> Tensor:
        """``-H g`` by the two-loop recursion over the stored curvature pairs."""
        q, alphas = -g, []
        for s, y in zip(reversed(self.s), reversed(self.y)):
            a = s.dot(q) / y.dot(s)
            alphas.append(a)
            q = q - a * y
        if self.s:
            q = q * (self.s[-1].dot(self.y[-1]) / self.y[-1].dot(self.y[-1]))
        for (s, y), a in zip(zip(self.s, self.y), reversed(alphas)):
            q = q + (a - y.dot(q) / y.dot(s)) * s
        return q

    def step(self, evaluate: Evaluate) -> Tensor:
        x = self._flat()
        if self._cache is not None and torch.equal(self._cache[0], x):
            _, losses, g = self._cache  # the last line-search point, unchanged since
        else:
            losses, g = self._evaluate(evaluate)
            self.s, self.y = ([], []) if self._cache is not None else (self.s, self.y)  # moved: restart
        d = self._direction(g)
        slope = g.dot(d)
        if not slope < 0:  # not a descent direction (numerical trouble): steepest descent
            self.s, self.y, d = [], [], -g
            slope = g.dot(d)
        # first step: scale like torch.optim.LBFGS, later ones trust the quasi-Newton scaling
        t = self.lr if self.s else self.lr * min(1.0, 1.0 / float(g.abs().sum().clamp_min(1e-12)))
        f0 = losses.sum()
        for _ in range(self.max_backtracks):
            self._set(x + t * d)
            new_losses, new_g = self._evaluate(evaluate)
            if new_losses.sum() <= f0 + self.c1 * t * slope:
                break
            t *= 0.5
        else:  # no sufficient decrease: stay, forget the curvature
            self._set(x)
            self.s, self.y, self._cache = [], [], None
            return losses
        s, y = t * d, new_g - g
        if y.dot(s) > 1e-10:
            self.s.append(s)
            self.y.append(y)
            if len(self.s) > self.history:
                self.s.pop(0)
                self.y.pop(0)
        self._cache = (self._flat(), new_losses, new_g)
        return losses
