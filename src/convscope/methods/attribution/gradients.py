"""Plain-gradient attributions: saliency, gradient x input and integrated gradients.

Saliency -- Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks", Sec. 3.1:
    the class score is linearized around the image, S_c(I) ~ w^T I + b (Eq. 2), with
    w = dS_c/dI at I_0 (Eq. 3); the map is M_ij = max_c |w_(i,j,c)|.
    (B, C, H, W) -> (B, 1, H, W), unsigned. ``reduce="mean"`` averages colours instead of the
    paper's max; ``magnitude="square"`` uses w^2 instead of |w|.

Gradient x input -- Shrikumar et al. 2016, "Not Just a Black Box" (and Sec. 3 of DeepLIFT,
    Shrikumar et al. 2017): x * dS_c/dx, per channel, (B, C, H, W) -> (B, C, H, W), signed.
    The product is taken in model-input space, so its implicit reference is the normalized zero,
    i.e. the dataset mean colour, not a black image. Any input shape: (B, ...) -> (B, ...).

Integrated gradients -- Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep
    Networks", Eq. 1:  IG_i(x) = (x_i - x'_i) * int_0^1 dF(x' + a (x - x'))/dx_i da,
    approximated by a quadrature sum_k w_k dF(x' + a_k (x - x'))/dx_i (Sec. 5 uses the Riemann
    sum). Completeness (Prop. 1): sum_i IG_i(x) = F(x) - F(x'); :meth:`completeness_gap`
    measures it. (B, C, H, W) -> (B, C, H, W), signed. Baselines x' other than black follow
    Sturmfels, Lundberg & Lee 2020 (Distill, "Visualizing the Impact of Feature Attribution
    Baselines"): a blurred copy of the input and uniform noise.

IG runs B * steps interpolated images through the network in chunks of ``batch_size`` and
accumulates the weighted gradients per sample, so peak memory is that of one chunk whatever
``steps`` is (Captum builds all B * steps images at once unless told otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from ...errors import check_choice, check_positive, warn
from ...model import Model, fast_forward
from ...types import OutputTarget, ProgressFn, Target
from ..registry import register
from .base import Attribution, input_gradient, repeat_target, rows_view, total_per_sample
from .baselines import BaselineName, check_baseline
from .quadrature import QuadratureRule, equidistributed_nodes, probe_count, quadrature

Magnitude = Literal["abs", "square"]
ChannelReduce = Literal["max", "mean"]


@register("saliency", family="gradient", signed=False)
class Saliency(Attribution):
    """Saliency map (Simonyan et al. 2014): gradient magnitude, max over colour channels."""

    def __init__(self, model: Model, *, magnitude: Magnitude = "abs",
                 reduce: ChannelReduce = "max") -> None:
        super().__init__(model)
        check_choice("magnitude", magnitude, Magnitude)
        check_choice("reduce", reduce, ChannelReduce)
        self.magnitude, self.reduce = magnitude, reduce

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        with torch.enable_grad():
            grad, _ = input_gradient(self.model, inputs, target)
        size = grad.abs() if self.magnitude == "abs" else grad.square()
        return size if self.packing is not None else self.finish(size)

    def finish(self, part: Tensor) -> Tensor:
        """Channels (dim 1) reduced for (B, C, ...) inputs; a (B, F) table keeps each feature."""
        if part.ndim < 3:
            return part
        return part.amax(1, keepdim=True) if self.reduce == "max" else part.mean(1, keepdim=True)


@register("gradient_x_input", family="gradient", signed=True)
class GradientXInput(Attribution):
    """Gradient x input (Shrikumar et al. 2016): per-channel product, signed."""

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        with torch.enable_grad():
            grad, _ = input_gradient(self.model, inputs, target)
        return grad * inputs


def gradient_sum(model: Model, inputs: Tensor, per_input: int,
                 points: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]], targets: Tensor | OutputTarget,
                 batch_size: int, progress: ProgressFn | None = None) -> Tensor:
    """sum_r factor_r * dF/dx(point_r) over ``per_input`` points of each input, shaped as ``inputs``.

    The B * ``per_input`` rows run ``batch_size`` at a time (memory of one chunk);
    ``points(rows)`` gives each row's input index (n,), its point (n, ...) and its factor
    (broadcastable to the point); ``targets`` holds one target per row (or a callable). The shared
    loop of integrated gradients (nodes of the path, quadrature weights) and GradientSHAP (random
    points, x - x' factors).
    """
    total = torch.zeros_like(inputs)
    rows_total = inputs.shape[0] * per_input
    for start in range(0, rows_total, batch_size):
        stop = min(start + batch_size, rows_total)
        owner, point, factor = points(torch.arange(start, stop, device=inputs.device))
        chunk_target = targets[start:stop] if isinstance(targets, Tensor) else targets
        with torch.enable_grad():
            grad, _ = input_gradient(model, point, chunk_target)
        total.index_add_(0, owner, grad * factor)
        if progress is not None:
            progress(stop, rows_total)
    return total


COMPLETENESS_TOLERANCE = 0.05
"""Relative completeness gap of integrated gradients above which it warns (a quadrature error,
unlike DeepLIFT's exact sum: a few percent is what 50-64 nodes give on real networks)."""


@register("integrated_gradients", family="gradient", signed=True)
class IntegratedGradients(Attribution):
    """Integrated gradients (Sundararajan et al. 2017): path integral of gradients from a baseline.

    Options: ``baseline`` "black" (pixel value 0, the default), "mean" (the dataset mean colour),
    "blur" (Gaussian blur of the input with ``sigma`` pixels), "uniform" (uniform pixel noise
    drawn with ``seed``) or a model-input tensor broadcastable to the inputs (see
    :mod:`.baselines`); ``steps`` gradient evaluations placed by ``rule``: "adaptive"
    (default: nodes crowd where the score moves, after ``steps // 2`` forward-only probes of the
    path; see :mod:`.quadrature`) or a fixed rule ("gausslegendre" is Captum's default);
    ``batch_size`` interpolated images per forward pass.
    """

    def __init__(
        self,
        model: Model,
        *,
        baseline: BaselineName | Tensor | tuple[Tensor, ...] = "black",
        steps: int = 50,
        rule: QuadratureRule = "adaptive",
        batch_size: int = 16,
        sigma: float = 10.0,
        seed: int = 0,
        progress: ProgressFn | None = None,
    ) -> None:
        super().__init__(model)
        baseline = check_baseline("baseline", baseline)  # type: ignore[assignment]
        check_positive("steps", steps, integer=True)
        check_positive("batch_size", batch_size, integer=True)
        check_positive("sigma", sigma)
        if rule != "adaptive":
            quadrature(rule, int(steps))  # validates the rule and its minimum number of steps
        self.baseline, self.steps, self.rule = baseline, int(steps), rule
        self.batch_size, self.sigma, self.seed, self.progress = int(batch_size), sigma, seed, progress

    def baselines(self, inputs: Tensor) -> Tensor:
        """The baseline x' for each input, shaped as the inputs, in model-input space."""
        return self.baseline_for(inputs, self.baseline, sigma=self.sigma, seed=self.seed)

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        target = self.fixed_target(inputs, target)
        baseline = self.baselines(inputs)
        diff = inputs - baseline
        alphas, weights, ends = self._nodes_and_ends(baseline, diff, target)
        n = self.steps

        def path(rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            b, k = rows // n, rows % n
            return b, baseline[b] + rows_view(alphas[b, k], diff) * diff[b], rows_view(weights[b, k], diff)

        total = gradient_sum(self.model, inputs, n, path, repeat_target(target, n), self.batch_size,
                             self.progress)
        attributions = diff * total
        self._check_completeness(attributions, ends)
        return attributions

    def _nodes_and_ends(self, baseline: Tensor, diff: Tensor, target: Tensor | OutputTarget
                        ) -> tuple[Tensor, Tensor, Tensor]:
        """Nodes and weights (B, steps) in the inputs' dtype, and F(x'), F(x) per sample (B, 2):
        the adaptive rule's probes hold both ends of the path; a fixed rule scores them."""
        if self.rule == "adaptive":
            scores = self._probe_scores(baseline, diff, target)
            alphas, weights = equidistributed_nodes(scores, self.steps)
            ends = scores[:, [0, -1]]
        else:
            alphas, weights = (t.expand(baseline.shape[0], -1) for t in quadrature(self.rule, self.steps))
            both = torch.cat([baseline, baseline + diff])
            fixed = target.repeat(2) if isinstance(target, Tensor) else target
            ends = fast_forward(self.model).scores(both, fixed).view(2, -1).T
        return alphas.to(baseline), weights.to(baseline), ends

    def _check_completeness(self, attributions: Tensor, ends: Tensor) -> None:
        """Warn when the attributions miss F(x) - F(x') by more than :data:`COMPLETENESS_TOLERANCE`
        (docs/architecture.md, convention 12): the quadrature was too coarse for this path; more steps fix it.
        The ends come from the forward-only fast path, so float rounding alone stays far below."""
        ends = ends.double()
        delta = ends[:, 1] - ends[:, 0]
        gap = (attributions.flatten(1).sum(1).double() - delta).abs()
        scale = delta.abs() + 1e-3 * ends.abs().sum(1) + 1e-12
        worst = float((gap / scale).max())
        if worst > COMPLETENESS_TOLERANCE:
            warn(f"integrated gradients misses F(x) - F(x') by {100 * worst:.1f}% with "
                 f"steps={self.steps} (rule {self.rule!r}): the path's score moves faster "
                 "than the nodes can follow; raise steps (the gap shrinks as steps grow)")

    def _probe_scores(self, baseline: Tensor, diff: Tensor, target: Tensor | OutputTarget) -> Tensor:
        """F on a uniform grid of the path, (B, probe_count + 1), forward passes only."""
        b = baseline.shape[0]
        cells = probe_count(self.steps)
        grid = torch.linspace(0, 1, cells + 1, device=baseline.device, dtype=baseline.dtype)
        rows = b * (cells + 1)

        def probes() -> Iterator[Tensor]:  # built chunk by chunk: memory of one chunk
            for start in range(0, rows, self.batch_size):
                r = torch.arange(start, min(start + self.batch_size, rows), device=baseline.device)
                i, j = r // (cells + 1), r % (cells + 1)
                yield baseline[i] + rows_view(grid[j], diff) * diff[i]

        scores = fast_forward(self.model).scores(probes(), repeat_target(target, cells + 1), total=rows)
        return scores.view(b, cells + 1)

    def completeness_gap(self, inputs: Tensor | Sequence[Tensor], attributions: Tensor | Sequence[Tensor],
                         target: Target = "top1", **call_options: Any) -> Tensor:
        """sum(attributions) - (F(x) - F(x')) per sample, (B,): zero for exact integration.

        Divide by ``F(x) - F(x')`` (see :meth:`score_change`) for a relative error; it shrinks as
        ``steps`` grows and is the usual check that ``steps`` is large enough. Several inputs: the
        sum runs over all of them; ``call_options`` are those the attributions were made with.
        """
        return total_per_sample(attributions) - self.score_change(inputs, target, **call_options)

    def score_change(self, inputs: Tensor | Sequence[Tensor], target: Target = "top1",
                     **call_options: Any) -> Tensor:
        """F(x) - F(x') per sample for the target read on the inputs, (B,)."""
        with self.running(inputs, target, **call_options) as call, torch.no_grad():
            x = call.inputs
            fixed = self.fixed_target(x, call.target)
            both = torch.cat([x, self.baselines(x)])
            scores = self.scores(self.model(both), fixed.repeat(2) if isinstance(fixed, Tensor) else fixed)
        return scores[: len(x)] - scores[len(x):]
