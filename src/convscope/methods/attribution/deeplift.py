"""DeepLIFT with the rescale rule, through the backward-rule mechanism of :mod:`convscope.model.rules`.

Shrikumar, Greenside & Kundaje 2017, "Learning Important Features Through Propagating Activation
Differences" (ICML). DeepLIFT explains the difference of the target score from its value at a
reference input, Δt = t(x) - t(x_ref), by contributions C that sum to it (summation-to-delta,
Eq. 1): sum_i C_{Δx_i Δt} = Δt. Contributions are multipliers times input differences,
C = m_{Δx Δt} * Δx (Eq. 2), and multipliers compose like gradients (chain rule, Eq. 3).

* Linear rule (Sec. 3.5.1): for an affine map the multiplier is its weight, i.e. the gradient.
  Convolutions, batch norm in eval mode, linear layers, average pooling, residual adds and eval
  dropout are affine, so the ordinary backward pass through them is already DeepLIFT.
* Rescale rule (Sec. 3.5.2): a rectifier y = clamp(x, lo, hi) passes the multiplier
  m_{Δx Δt} = (Δy / Δx) * m_{Δy Δt}, the secant slope from reference to input instead of the
  tangent. Where Δx = 0 the slope is 0/0 and the gradient 1[lo < x < hi] is used (Captum does
  so below |Δx| < 1e-10); it does not change the sum, as those units contribute nothing.

:class:`RescaleRule` is that rule for every rectifier call :mod:`~convscope.model.rules` routes
(nn.ReLU/ReLU6 modules, F.relu/relu6, hardtanh(0, hi), torch.relu, clamp(min=0), in place or
not). Input and reference run as one batch ``cat([x, x_ref])`` (batch norm is in eval mode under
``guarded``, so the halves never mix): each rectifier call sees both halves, and its backward
pairs them, Δx = x - x_ref and Δy = y - y_ref. The cost is one forward+backward of 2B images.

On a network that is piecewise linear with only routed rectifiers (EfficientNet-Lite0:
conv/BN/ReLU6/add/avgpool/linear) summation-to-delta holds exactly up to float error. It does not
hold, and a warning says so with the gap, when the network has nonlinearities the rule does not
cover: max-pool keeps its gradient, as in the reference implementation (kundajelab/deeplift,
``MaxPoolDeepLiftMode.gradient``; Captum instead redistributes Δ between the two argmax positions),
as do sigmoid, SiLU, GELU, softmax inside the net, leaky ReLU and TorchScript modules.

References (``reference=``, in model-input space): "black" (pixel value 0, normalized), "zeros"
(the normalized zero: the dataset mean colour), "blurred" (Gaussian blur of the input, ``sigma``
pixels) or a tensor broadcastable to the inputs. Shapes: (B, C, H, W) -> (B, C, H, W), signed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from ...errors import BadArgument, check_positive
from ...model import Model, select, target_indices
from ...model.rules import ActivationCall, BackwardRule, backward_rule
from ...model.structured import pixel_black, require_image
from ...types import Target
from ..registry import register
from .base import Attribution, total_per_sample
from .gradients import check_choice, gaussian_blur

Reference = Literal["black", "blurred", "zeros"]

GAP_TOLERANCE = 0.01
"""Relative summation-to-delta gap above which :class:`DeepLift` warns (float error is ~1e-5)."""


class RescaleRule(BackwardRule):
    """DeepLIFT's rescale rule for a batch ``cat([x, x_ref])`` of ``2 * batch`` rows.

    The slope Δy/Δx is symmetric in input and reference, so both halves get the same multiplier
    (the reference half carries no signal from a score read on the input half anyway). Where
    Δx = 0 exactly the slope is 0/0 and the gradient 1[lo < y < hi] is used (Captum uses it below
    |Δx| < 1e-10). No larger threshold is needed: for any nonzero float Δx the computed slope lies
    in [0, 1], because y = x bit for bit in the linear part and float rounding is monotone.

    A call whose leading dimension is not ``2 * batch`` cannot be paired (a network that reshapes
    its batch): it keeps the plain gradient and is counted in :attr:`unpaired`. One instance per
    attribution call: the counter is its only state.
    """

    name: ClassVar[str] = "rescale"
    needs_input: ClassVar[bool] = True

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.unpaired = 0

    def backward(self, call: ActivationCall, grad_out: Tensor) -> Tensor:
        inp = call.inp
        if inp is None or inp.ndim == 0 or inp.shape[0] != 2 * self.batch:
            self.unpaired += 1
            return call.masked(grad_out)
        x, x_ref = inp.chunk(2)
        y, y_ref = call.out.chunk(2)
        dx = x - x_ref
        # Units dead (or capped) in both halves of a depthwise channel give Δx = 0 exactly: common.
        half = ActivationCall(call.index, call.lo, call.hi, x, y)
        tangent = half.masked(y.new_ones(()).expand_as(y))  # 1[lo < y < hi] in one fused kernel
        slope = torch.where(dx == 0, tangent, (y - y_ref).div_(dx))
        return (grad_out.unflatten(0, (2, self.batch)) * slope).flatten(0, 1)


@register("deeplift", family="decomposition", signed=True)
class DeepLift(Attribution):
    """DeepLIFT, rescale rule (Shrikumar et al. 2017): contributions that sum to t(x) - t(x_ref).

    Options: ``reference`` "black" (pixel value 0), "zeros" (normalized zero = mean colour),
    "blurred" (Gaussian blur with ``sigma`` pixels) or a model-input tensor broadcastable to the
    inputs.
    Warns when the contributions miss t(x) - t(x_ref) by more than 1% (see the module notes).
    """

    def __init__(self, model: Model, *, reference: Reference | Tensor = "black",
                 sigma: float = 10.0) -> None:
        super().__init__(model)
        if isinstance(reference, (Tensor, tuple, list)):
            if not all(isinstance(r, Tensor) and torch.isfinite(r).all()
                       for r in ([reference] if isinstance(reference, Tensor) else reference)):
                raise BadArgument("reference tensor contains NaN or infinite values "
                                  "(give finite tensors, one per input)")
        else:
            check_choice("reference", reference, Reference)
        check_positive("sigma", sigma)
        self.reference, self.sigma = reference, sigma

    def references(self, inputs: Tensor) -> Tensor:
        """The reference x_ref for each input, shaped as the inputs, in model-input space."""
        if isinstance(self.reference, (Tensor, tuple, list)):
            return self.given_tensor(self.reference, inputs, "reference")
        return self.per_input(inputs, self._named_reference)

    def _named_reference(self, x: Tensor) -> Tensor:
        """A named reference for one input tensor (non-images: "black" is model-input 0)."""
        if self.reference == "blurred":
            require_image(x, "reference='blurred'")
            return gaussian_blur(x, self.sigma)
        if self.reference == "zeros":
            return torch.zeros_like(x)
        return pixel_black(self.model, x)

    def _pair_scores(self, logits: Tensor, batch: int, target: Target) -> tuple[Tensor, Tensor]:
        """Scores (B,) of input and reference for the target read on the input half."""
        half, ref = logits[:batch], logits[batch:]
        idx = target_indices(half.detach(), target, self.model.labels)
        chosen = target if idx is None else idx
        return select(half, chosen, self.model.labels), select(ref, chosen, self.model.labels)

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        batch = inputs.shape[0]
        ref = self.references(inputs).detach()
        x = inputs.detach().requires_grad_(True)
        rule = RescaleRule(batch)
        with torch.enable_grad(), backward_rule(rule):
            scores, ref_scores = self._pair_scores(self.model(torch.cat([x, ref])), batch, target)
            (multipliers,) = torch.autograd.grad(scores.sum(), x)
        attributions = multipliers * (inputs - ref)
        self._check_sum(attributions, scores.detach(), ref_scores.detach(), rule)
        return attributions

    @staticmethod
    def _check_sum(attributions: Tensor, scores: Tensor, ref_scores: Tensor, rule: RescaleRule) -> None:
        """Warn when summation-to-delta fails; the scale floor keeps Δt ~ 0 (x ~ x_ref) quiet."""
        delta = scores - ref_scores
        gap = (attributions.flatten(1).sum(1) - delta).abs()
        scale = delta.abs() + 1e-3 * (scores.abs() + ref_scores.abs()) + 1e-12
        worst = float((gap / scale).max())
        if worst > GAP_TOLERANCE:
            extra = f"; {rule.unpaired} rectifier calls could not be paired" if rule.unpaired else ""
            warnings.warn(
                f"DeepLIFT contributions miss t(x) - t(x_ref) by {100 * worst:.1f}%: the network "
                f"has nonlinearities the rescale rule does not cover (max-pool, sigmoid, SiLU, "
                f"GELU, TorchScript ...), which keep their gradients{extra}",
                stacklevel=4,
            )

    def score_change(self, inputs: Tensor | Sequence[Tensor], target: Target = "top1",
                     **call_options: Any) -> Tensor:
        """t(x) - t(x_ref) per sample for the target read on the inputs, (B,)."""
        with self.running(inputs, target, **call_options) as call, torch.no_grad():
            x = call.inputs
            logits = self.model(torch.cat([x, self.references(x)]))
            scores, ref_scores = self._pair_scores(logits, len(x), call.target)
        return scores - ref_scores

    def completeness_gap(self, inputs: Tensor | Sequence[Tensor], attributions: Tensor | Sequence[Tensor],
                         target: Target = "top1", **call_options: Any) -> Tensor:
        """sum(attributions) - (t(x) - t(x_ref)) per sample, (B,): zero up to float error when
        every nonlinearity of the network is a routed rectifier."""
        return total_per_sample(attributions) - self.score_change(inputs, target, **call_options)
