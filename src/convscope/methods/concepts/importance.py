"""How much a class score depends on each concept: CRAFT's Sobol total indices and a gradient
estimate (Fel et al. 2023, Sec. 3.2 and Eq. 4-5).

A concept's coefficients on an image are scaled by a random mask ``m_j`` in [0, 1] (one per
concept, the same at every position), the layer's activations are rebuilt from the masked
concepts plus what the factorization left out (the residual, so an all-ones mask gives the real
activations back), and the network runs on from that layer:

    A'(m) = sum_j m_j U_j W_j + (A - U W),     f(m) = score of the target class.

Sobol total index of concept j (Jansen's estimator, Saltelli et al. 2010, Table 2 (f)): with two
quasi-random designs ``M_A``, ``M_B`` (D, k) from a scrambled Sobol sequence and ``M_C^j`` =
``M_A`` with column j taken from ``M_B``,

    S_T,j = mean_d (f(M_A[d]) - f(M_C^j[d]))^2 / (2 Var[f]),

the share of the score's variance that involves concept j, averaged over the images. It costs
D (k + 2) passes of the network per image; the network below the layer runs once per image and
chunk (the rows repeat one image's output, as AblationCAM's do).

Gradient estimate: ``g_j = d f / d m_j`` at m = 1, which equals the sum over positions of
``(d f / d U_j) U_j`` (gradient x coefficient), at one forward and backward per image. Where f is
linear in the masks (a layer followed by pooling and a linear head) the total index is exactly
``S_T,j = g_j^2 / sum_i g_i^2`` (independent masks of equal variance), so that is the estimate
returned: the Sobol index of the linearized network, in the same units. Deeper in a network the
two part where concepts interact; the tests show where they agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from ...errors import BadArgument
from ...model import capture
from ...model.guard import guarded
from ...model.targets import select, target_indices
from ...types import Target
from .discovery import Discovery, reconstruct

Importance = Literal["sobol", "gradient"]
Progress = Callable[[int, int], None]


def sobol_design(k: int, designs: int, seed: int = 0) -> Tensor:
    """Masks (D (k + 2), k) in [0, 1]: M_A, M_B, then M_C^1 ... M_C^k (Saltelli's scheme)."""
    if designs < 2:
        raise BadArgument(f"designs={designs}: Sobol indices need at least 2 designs")
    engine = torch.quasirandom.SobolEngine(2 * k, scramble=True, seed=seed)
    points = engine.draw(designs)
    a, b = points[:, :k], points[:, k:]
    mixed = a[None].repeat(k, 1, 1)
    index = torch.arange(k)
    mixed[index, :, index] = b.T  # M_C^j: column j from B
    return torch.cat([a, b, mixed.reshape(k * designs, k)])


def jansen_total(scores: Tensor, k: int, designs: int) -> Tensor:
    """Total indices (..., k) from scores (..., D (k + 2)) of :func:`sobol_design`'s masks."""
    f_a, f_b = scores[..., :designs], scores[..., designs:2 * designs]
    f_c = scores[..., 2 * designs:].reshape(*scores.shape[:-1], k, designs)
    var = torch.cat([f_a, f_b], dim=-1).var(dim=-1, unbiased=False)[..., None]
    total = ((f_a[..., None, :] - f_c) ** 2).mean(-1) / 2
    return torch.where(var > 0, total / var.clamp_min(1e-30), torch.zeros_like(total))


class _Head:
    """Runs the network on with the layer's output replaced by rebuilt activations."""

    def __init__(self, model: nn.Module, found: Discovery, inputs: Tensor, target: Target) -> None:
        self.model, self.found, self.inputs = model, found, inputs
        self.layer = found.activations.layer
        self.residual = found.residual
        logits = found.activations.logits
        self.labels = getattr(model, "labels", None)
        self.target: Tensor | Target = target
        if not callable(target):
            idx = target_indices(logits, target, self.labels)
            assert idx is not None
            self.target = idx
        self.compact = True

    def scores(self, images: Tensor, masks: Tensor) -> Tensor:
        """Target scores (R,) of rows (image index, mask (k,)); differentiable in ``masks``."""
        rows = reconstruct(self.found.maps[images], self.found.bases, masks) + self.residual[images]
        distinct = images.unique()

        def replace(_name: str, output: Tensor) -> Tensor:
            return rows.to(output)

        logits = None
        with capture(self.model, self.layer, on_output=replace):
            if self.compact:
                try:
                    logits = self.model(self.inputs[distinct])
                    self.compact = isinstance(logits, Tensor) and logits.shape[0] == len(images)
                except Exception:
                    self.compact = False
                logits = logits if self.compact else None
            if logits is None:  # a forward that reads its batch size: every row runs whole
                logits = self.model(self.inputs[images])
        target = self.target[images] if isinstance(self.target, Tensor) else self.target
        return select(logits, target, self.labels).float()  # type: ignore[arg-type]


def concept_importance(model: nn.Module, inputs: Tensor, found: Discovery, target: Target = "top1",
                       *, method: Importance = "sobol", designs: int = 32, seed: int = 0,
                       batch_size: int = 64, progress: Progress | None = None) -> Tensor:
    """Importance (N, k) of each concept for each image's ``target`` score (module notes)."""
    head = _Head(model, found, inputs, target)
    n, k = found.maps.shape[:2]
    step = max(1, batch_size)
    with guarded(model):
        if method == "gradient":
            out = []
            for start in range(0, n, step):
                images = torch.arange(start, min(n, start + step), device=inputs.device)
                masks = torch.ones(len(images), k, device=inputs.device, requires_grad=True)
                with torch.enable_grad():
                    (grad,) = torch.autograd.grad(head.scores(images, masks).sum(), masks)
                square = grad.detach() ** 2
                total = square.sum(1, keepdim=True)
                out.append(torch.where(total > 0, square / total.clamp_min(1e-30), 0.0))
                if progress is not None:
                    progress(int(images[-1]) + 1, n)
            return torch.cat(out)
        if method != "sobol":
            raise BadArgument(f"importance={method!r}: choose 'sobol' or 'gradient'")
        design = sobol_design(k, designs, seed).to(inputs.device)
        per_image = design.shape[0]
        scores = torch.empty(n * per_image, device=inputs.device)
        with torch.no_grad():
            for start in range(0, n * per_image, step):
                rows = torch.arange(start, min(n * per_image, start + step), device=inputs.device)
                scores[rows] = head.scores(rows // per_image, design[rows % per_image])
                if progress is not None:
                    progress(int(rows[-1]) + 1, n * per_image)
        return jansen_total(scores.reshape(n, per_image), k, designs)
