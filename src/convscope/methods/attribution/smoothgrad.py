"""SmoothGrad: average any attribution over noisy copies of the input.

Smilkov, Thorat, Kim, Viégas & Wattenberg 2017, "SmoothGrad: removing noise by adding noise",
Eq. 3:  M^_c(x) = 1/n sum_{k=1..n} M_c(x + N(0, sigma^2)), with the noise level given as a
fraction of the input's range, sigma / (x_max - x_min) (10-20% works best there).
SmoothGrad^2 (Hooker et al. 2019, "A Benchmark for Interpretability Methods") averages
the squared maps instead.

A wrapper, not a flag on each method (docs/architecture.md, section 2): it smooths any registered method or
:class:`~convscope.methods.attribution.base.Attribution` instance. Shapes follow the wrapped
method: (B, C, H, W) -> whatever it returns per sample, averaged over ``samples`` copies.

The class explained is read once on the clean input (``"top1"`` of a noisy copy may be another
class) by the wrapped method's ``fixed_target`` and passed to it as explicit indices (for a
layer-unit method such as LayerGuidedBackprop the indices are channels). The B * samples noisy copies run in
chunks of ``batch_size``; the noise of copy k of sample b is drawn in a fixed order from one
seeded generator, so the result depends on ``seed`` but not on ``batch_size``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...errors import BadArgument, check_positive
from ...model import Model
from ...types import ProgressFn, Target
from ..registry import REGISTRY, build_method, register
from .base import Attribution, repeat_target, rows_view


@register("smoothgrad", family="gradient", signed=False)
class SmoothGrad(Attribution):
    """SmoothGrad (Smilkov et al. 2017): any method averaged over noisy copies of the input.

    Options: ``base`` (a registered name or an Attribution instance bound to the same model),
    ``noise`` (standard deviation as a fraction of each input's value range; 0 = no noise),
    ``samples`` noisy copies per input, ``batch_size`` copies per pass, ``seed``, ``squared``
    (SmoothGrad^2: average of squared maps) and the wrapped method's own options.
    """

    def __init__(
        self,
        model: Model,
        *,
        base: str | Attribution = "saliency",
        noise: float = 0.15,
        samples: int = 25,
        batch_size: int = 16,
        seed: int = 0,
        squared: bool = False,
        progress: ProgressFn | None = None,
        **method_options: Any,
    ) -> None:
        super().__init__(model)
        if noise < 0:
            raise BadArgument(f"noise={noise!r}: must be 0 or a positive fraction of the input range")
        check_positive("samples", samples, integer=True)
        check_positive("batch_size", batch_size, integer=True)
        self.wrapped = self._wrap(model, base, method_options)
        self.noise, self.samples, self.batch_size = float(noise), int(samples), int(batch_size)
        self.seed, self.squared, self.progress = seed, squared, progress
        # maps carry the wrapped method's signs, unless squared (explain() draws them so)
        info = REGISTRY.get(self.wrapped.method_name)
        self.signed = (info.signed if info else True) and not squared

    @staticmethod
    def _wrap(model: Model, method: str | Attribution, options: dict[str, Any]) -> Attribution:
        if isinstance(method, Attribution):
            if options:
                raise BadArgument(f"options {sorted(options)} given with a method instance; "
                                  "set them when building the instance")
            if method.model is not model:
                raise BadArgument("the wrapped method is bound to another model")
            return method
        if not isinstance(method, str):
            raise BadArgument(f"base={method!r}: give a method name or an Attribution instance")
        if method == "smoothgrad":
            raise BadArgument("base='smoothgrad': SmoothGrad cannot wrap itself")
        layer = options.pop("layer", None)
        return build_method(method, model, layer, **options)

    def spans(self, inputs: Tensor) -> Tensor:
        """Each sample's value range (x_max - x_min), per input tensor for several inputs."""
        return self.per_input(inputs, lambda x: rows_view(x.flatten(1).amax(1) - x.flatten(1).amin(1), x))

    def noisy_copies(self, inputs: Tensor, gen: torch.Generator, rows: Tensor,
                     spans: Tensor | None = None) -> Tensor:
        """Copies ``inputs[rows // samples] + noise``, one fresh noise draw per row, in order."""
        b = rows // self.samples
        span = (self.spans(inputs) if spans is None else spans)[b]
        eps = torch.stack([torch.randn(inputs.shape[1:], generator=gen, dtype=inputs.dtype)
                           for _ in range(len(rows))]).to(inputs.device)
        return inputs[b] + self.noise * span * eps

    def finish(self, part: Tensor) -> Tensor:
        return self.wrapped.finish(part)

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        targets = repeat_target(self.wrapped.fixed_target(inputs, target), self.samples)
        gen = torch.Generator().manual_seed(self.seed)
        total: Tensor | None = None
        rows_total = inputs.shape[0] * self.samples
        spans = self.spans(inputs)
        for start in range(0, rows_total, self.batch_size):
            stop = min(start + self.batch_size, rows_total)
            rows = torch.arange(start, stop, device=inputs.device)
            chunk_target = targets[start:stop] if isinstance(targets, Tensor) else targets
            maps = self.wrapped.attribute(self.noisy_copies(inputs, gen, rows, spans), chunk_target)
            if self.squared:
                maps = maps.square()
            if total is None:
                total = maps.new_zeros(inputs.shape[0], *maps.shape[1:])
            total.index_add_(0, rows // self.samples, maps)
            if self.progress is not None:
                self.progress(stop, rows_total)
        assert total is not None
        return total / self.samples
