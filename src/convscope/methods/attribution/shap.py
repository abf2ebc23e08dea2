"""GradientSHAP and DeepLIFT-SHAP: gradient attributions averaged over a distribution of baselines.

Lundberg & Lee 2017, "A Unified Approach to Interpreting Model Predictions": SHAP values explain
f(x) - E[f(x')] with x' drawn from a background distribution. Both methods here estimate them
from a baseline distribution D (K baselines x'_j, each shaped as one input):

GradientSHAP (the ``shap`` library's GradientExplainer, Captum's ``GradientShap``): expected
    gradients (Erion et al. 2021, "Improving performance of deep learning models with axiomatic
    attribution priors and expected gradients", Eq. 4), integrated gradients with the path's
    baseline and position drawn at random. For each of ``samples`` draws per input: x' ~ D
    uniformly, a ~ U(0, 1), x~ = x + N(0, stdev^2) (``stdev`` = 0: no noise), and

        phi = mean over draws of (x~ - x') * dF(x' + a (x~ - x')) / dx,

    so E[phi] = E_x'[IG(x~, x')] and, with no noise, completeness holds in expectation:
    E[sum_i phi_i] = f(x) - E_x'[f(x')]. The draws run through the integrated-gradients loop
    (:func:`~convscope.methods.attribution.gradients.gradient_sum`) in chunks of ``batch_size``;
    baseline indices and positions are drawn up front and noise row by row from one seeded
    generator, so results depend on ``seed`` but not on ``batch_size``.

DeepLIFT-SHAP (Lundberg & Lee 2017, Sec. 4.2 "Deep SHAP"; Captum's ``DeepLiftShap``): DeepLIFT's
    rescale rule (:mod:`.deeplift`) with each baseline as the reference, averaged:
    phi = 1/K sum_j DeepLIFT(x, x'_j). Deterministic; the B * K (input, reference) pairs run
    ``batch_size`` at a time, each chunk one forward and backward of its pairs. Its sum is
    f(x) - mean_j f(x'_j) wherever DeepLIFT sums to delta.

The distribution (``baselines``): a tensor (K, *input shape) of K baselines (a tensor shaped as
one input is K = 1; for several inputs a tuple with one such tensor per input, the same K), or a
word of :mod:`.baselines`: "uniform" draws ``draws`` uniform-noise images per input, "black",
"mean" and "blur" give the one baseline they name (K = 1). Shapes: inputs (B, ...) -> (B, ...),
signed; tables, signals and several inputs as the other gradient methods.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...errors import BadArgument, check_positive
from ...model import Model
from ...types import ProgressFn, Target
from ..registry import register
from .base import Attribution, repeat_target, rows_view
from .baselines import BaselineName, check_baseline
from .deeplift import DeepLift
from .gradients import gradient_sum

Distribution = BaselineName | Tensor | tuple[Tensor, ...]


class _BaselineDistribution(Attribution):
    """A method over a distribution of baselines: the option ``baselines`` made into tensors."""

    def __init__(self, model: Model, *, baselines: Distribution, draws: int, sigma: float,
                 seed: int) -> None:
        super().__init__(model)
        self.given = check_baseline("baselines", baselines)
        check_positive("draws", draws, integer=True)
        check_positive("sigma", sigma)
        self.draws, self.sigma, self.seed = int(draws), float(sigma), int(seed)

    def distribution(self, inputs: Tensor) -> tuple[int, Callable[[Tensor, Tensor], Tensor]]:
        """K, and the baselines ``rows(i, j)`` (n, *sample shape) of inputs i (n,) drawn j (n,).

        Noise baselines are made row by row (baseline j from seed ``seed + j``, the same for every
        input), so "uniform" with many draws costs the memory of one chunk.
        """
        if self.given == "uniform":
            def noise(i: Tensor, j: Tensor) -> Tensor:
                return torch.cat([self.baseline_for(inputs[:1], "uniform", seed=self.seed + int(k))
                                  for k in j.tolist()])

            return self.draws, noise
        if isinstance(self.given, str):
            each = self.baseline_for(inputs, self.given, sigma=self.sigma, seed=self.seed)
            return 1, lambda i, j: each[i]
        shared = self._given_distribution(inputs)
        return shared.shape[0], lambda i, j: shared[j]

    def _given_distribution(self, inputs: Tensor) -> Tensor:
        """The user's K baselines, (K, *sample shape) as the (packed) inputs, or one line."""
        assert isinstance(self.given, (Tensor, tuple))
        parts = [self.given] if isinstance(self.given, Tensor) else list(self.given)
        shapes = self.packing.shapes if self.packing is not None else (tuple(inputs.shape[1:]),)
        if len(parts) != len(shapes):
            raise BadArgument(f"baselines: give one tensor (K, ...) per input ({len(shapes)} inputs of "
                              f"shapes {', '.join(map(str, shapes))})")
        parts = [p[None] if p.ndim == len(shape) else p for p, shape in zip(parts, shapes)]
        sizes = {p.shape[0] for p in parts}
        out = []
        for i, (p, shape) in enumerate(zip(parts, shapes)):
            which = f"baselines for input {i}" if len(shapes) > 1 else "baselines"
            try:
                if p.ndim != len(shape) + 1 or len(sizes) > 1:
                    raise RuntimeError
                out.append(p.to(inputs).expand(p.shape[0], *shape).reshape(p.shape[0], -1))
            except RuntimeError:
                raise BadArgument(f"{which} of shape {tuple(p.shape)}: give a distribution of K "
                                  f"baselines, (K, {', '.join(map(str, shape))}), the same K for "
                                  "every input") from None
        flat = torch.cat(out, 1)
        return flat.view(flat.shape[0], *inputs.shape[1:])


@register("gradient_shap", family="gradient", signed=True)
class GradientShap(_BaselineDistribution):
    """GradientSHAP (Lundberg & Lee 2017; expected gradients): IG from random baselines and points.

    Options: ``baselines`` the distribution ("uniform": ``draws`` noise images, the default;
    "black", "mean", "blur" with ``sigma`` pixels; or a tensor (K, *input shape)), ``samples``
    draws per input, ``stdev`` of Gaussian noise added to the input (model-input units, Captum's
    ``stdevs``), ``batch_size`` gradient evaluations per pass, ``seed``.
    """

    def __init__(
        self,
        model: Model,
        *,
        baselines: BaselineName | Tensor | tuple[Tensor, ...] = "uniform",
        samples: int = 32,
        stdev: float = 0.0,
        draws: int = 8,
        sigma: float = 10.0,
        batch_size: int = 16,
        seed: int = 0,
        progress: ProgressFn | None = None,
    ) -> None:
        super().__init__(model, baselines=baselines, draws=draws, sigma=sigma, seed=seed)
        check_positive("samples", samples, integer=True)
        check_positive("batch_size", batch_size, integer=True)
        if not stdev >= 0:
            raise BadArgument(f"stdev={stdev!r}: the noise's standard deviation, 0 or more")
        self.samples, self.stdev = int(samples), float(stdev)
        self.batch_size, self.progress = int(batch_size), progress

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        target = self.fixed_target(inputs, target)
        count, baselines = self.distribution(inputs)
        b, n = inputs.shape[0], self.samples
        gen = torch.Generator().manual_seed(self.seed)
        which = torch.randint(0, count, (b, n), generator=gen).to(inputs.device)
        alphas = torch.rand(b, n, generator=gen, dtype=torch.float64).to(inputs)

        def points(rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            i, k = rows // n, rows % n
            x = inputs[i]
            if self.stdev > 0:  # row by row, in order: the same noise whatever the chunk size
                noise = [torch.randn(inputs.shape[1:], generator=gen, dtype=inputs.dtype) for _ in rows]
                x = x + self.stdev * torch.stack(noise).to(inputs.device)
            base = baselines(i, which[i, k])
            diff = x - base
            return i, base + rows_view(alphas[i, k], diff) * diff, diff

        total = gradient_sum(self.model, inputs, n, points, repeat_target(target, n), self.batch_size,
                             self.progress)
        return total / n


@register("deeplift_shap", family="decomposition", signed=True)
class DeepLiftShap(_BaselineDistribution):
    """DeepLIFT-SHAP (Lundberg & Lee 2017): DeepLIFT averaged over a distribution of references.

    Options: ``baselines`` the distribution ("uniform": ``draws`` noise images, the default;
    "black", "mean", "blur" with ``sigma`` pixels; or a tensor (K, *input shape)),
    ``batch_size`` (input, reference) pairs per forward and backward pass, ``seed``.
    """

    needs_rules = True

    def __init__(
        self,
        model: Model,
        *,
        baselines: BaselineName | Tensor | tuple[Tensor, ...] = "uniform",
        draws: int = 8,
        sigma: float = 10.0,
        batch_size: int = 16,
        seed: int = 0,
        progress: ProgressFn | None = None,
    ) -> None:
        super().__init__(model, baselines=baselines, draws=draws, sigma=sigma, seed=seed)
        check_positive("batch_size", batch_size, integer=True)
        self.batch_size, self.progress = int(batch_size), progress
        self.deeplift = DeepLift(model)

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        fixed = self.fixed_target(inputs, target)
        k, baselines = self.distribution(inputs)
        targets = repeat_target(fixed, k)
        total = torch.zeros_like(inputs)
        rows_total = inputs.shape[0] * k
        for start in range(0, rows_total, self.batch_size):
            stop = min(start + self.batch_size, rows_total)
            rows = torch.arange(start, stop, device=inputs.device)
            i, j = rows // k, rows % k
            chunk_target = targets[start:stop] if isinstance(targets, Tensor) else targets
            total.index_add_(0, i, self.deeplift.contributions(inputs[i], baselines(i, j), chunk_target))
            if self.progress is not None:
                self.progress(stop, rows_total)
        return total / k
