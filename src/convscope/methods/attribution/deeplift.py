"""DeepLIFT with the rescale rule, through the backward-rule mechanism of :mod:`convscope.model.rules`.

Shrikumar, Greenside & Kundaje 2017, "Learning Important Features Through Propagating Activation
Differences" (ICML). DeepLIFT explains the difference of the target score from its value at a
reference input, Δt = t(x) - t(x_ref), by contributions C that sum to it (summation-to-delta,
Eq. 1): sum_i C_{Δx_i Δt} = Δt. Contributions are multipliers times input differences,
C = m_{Δx Δt} * Δx (Eq. 2), and multipliers compose like gradients (chain rule, Eq. 3).

* Linear rule (Sec. 3.5.1): for an affine map the multiplier is its weight, i.e. the gradient.
  Convolutions, batch norm in eval mode, linear layers, average pooling, residual adds and eval
  dropout are affine, so the ordinary backward pass through them is already DeepLIFT.
* Rescale rule (Sec. 3.5.2): a nonlinearity of one input y = f(x) passes the multiplier
  m_{Δx Δt} = (Δy / Δx) * m_{Δy Δt}, the secant slope from reference to input instead of the
  tangent. Where Δx = 0 the slope is 0/0 and the gradient f'(x) is used (Captum does so below
  |Δx| < 1e-10); it does not change the sum, as those units contribute nothing. The paper states
  it for every nonlinearity of a single input (ReLU, tanh, sigmoid, ...).
* Max-pooling: a window's Δy = max(x) - max(x_ref) is handed whole to one position, so its
  multiplier there is Δy/Δx and zero elsewhere. The reference implementation's
  ``MaxPoolDeepLiftMode.scaled_gradient`` (kundajelab/deeplift) routes it to the input's argmax;
  there Δx can be 0 while Δy is not (the reference's maximum is larger: Captum's
  ``test_lin_maxpool_lin_classification``), so, as Captum does, the argmax of the reference is
  used when max(x_ref) > max(x). Then Δx is never 0 where Δy is not (x_i = max(x) > max(x_ref)
  >= x_ref_i, or the mirror image), and every window's Δy is accounted for exactly.

:class:`RescaleRule` is that rule for every call :mod:`~convscope.model.rules` routes: rectifiers
(nn.ReLU/ReLU6, F.relu/relu6, hardtanh(0, hi), torch.relu, clamp(min=0)) and, since the rule
sets ``elementwise``, every other single-input elementwise nonlinearity (sigmoid, tanh, softplus,
ELU, GELU, SiLU, hardswish, hardsigmoid, leaky ReLU, ...), module, functional or in place.
Max-pooling (``F.max_pool1d/2d/3d``, ``F.adaptive_max_pool1d/2d/3d``) is replaced for the call
through the mode's ``overrides``. Input and reference run as one batch ``cat([x, x_ref])`` (batch
norm is in eval mode under ``guarded``, so the halves never mix): each routed call sees both
halves, and its backward pairs them, Δx = x - x_ref and Δy = y - y_ref. The cost is one
forward+backward of 2B images.

On a network built from affine maps, these nonlinearities and max-pooling, summation-to-delta
holds exactly up to float error. Where it cannot (operations of several input-dependent tensors:
attention, gating products x * sigmoid(x) written as a product, softmax inside the network,
normalization with statistics of its input such as LayerNorm or batch norm in train mode), the
rule keeps their gradients and :mod:`~convscope.model.rules` measures what each such call adds to
or loses from the contributions' sum; a warning names the layers and their gaps. TorchScript
modules and hand-written maxima (``x.amax((2, 3))``) are invisible and can only be reported as an
unexplained total gap.

References (``reference=``, in model-input space, the words of :mod:`.baselines`): "black" (pixel
value 0, normalized), "mean" (the normalized zero: the dataset mean colour), "blur" (Gaussian blur
of the input, ``sigma`` pixels), "uniform" (seeded pixel noise) or a tensor broadcastable to the
inputs. Shapes: (B, C, H, W) -> (B, C, H, W), signed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import check_positive, warn
from ...model import Model, select, target_indices
from ...model.rules import ActivationCall, BackwardRule, backward_rule
from ...model.watch import Gap, gap_report
from ...types import Target
from ..registry import register
from .base import Attribution, total_per_sample
from .baselines import BaselineName, check_baseline

GAP_TOLERANCE = 0.01
"""Relative summation-to-delta gap above which :class:`DeepLift` warns (float error is ~1e-5)."""


class RescaleRule(BackwardRule):
    """DeepLIFT's rescale rule for a batch ``cat([x, x_ref])`` of ``2 * batch`` rows.

    The slope Δy/Δx is symmetric in input and reference, so both halves get the same multiplier
    (the reference half carries no signal from a score read on the input half anyway). Where
    Δx = 0 exactly the slope is 0/0 and the tangent f'(x) is used (Captum uses it below
    |Δx| < 1e-10). For rectifiers no larger threshold is needed: for any nonzero float Δx the
    computed slope lies in [0, 1], because y = x bit for bit in the linear part and float
    rounding is monotone. For smooth functions a tiny Δx gives a rounded slope, but Δy = slope * Δx
    still holds, which is what the sum needs.

    A call whose leading dimension is not ``2 * batch`` cannot be paired (a network that reshapes
    its batch): it keeps the plain gradient and is counted in :attr:`unpaired`. One instance per
    attribution call: the counter is its only state.
    """

    name: ClassVar[str] = "rescale"
    needs_input: ClassVar[bool] = True
    elementwise: ClassVar[bool] = True

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.unpaired = 0

    def paired(self, t: Tensor | None) -> bool:
        return t is not None and t.ndim > 0 and t.shape[0] == 2 * self.batch

    def backward(self, call: ActivationCall, grad_out: Tensor) -> Tensor:
        inp = call.inp
        if inp is None or not self.paired(inp):
            self.unpaired += 1
            return call.masked(grad_out) if call.fn is None else grad_out * call.tangent()
        x, x_ref = inp.chunk(2)
        y, y_ref = call.out.chunk(2)
        dx = x - x_ref
        # Units dead (or capped) in both halves of a depthwise channel give Δx = 0 exactly: common.
        if call.fn is None:  # a rectifier: 1[lo < y < hi] in one fused kernel
            tangent = ActivationCall(call.index, call.lo, call.hi, x, y).masked(y.new_ones(()).expand_as(y))
        else:
            tangent = call.tangent(x, y)
        slope = torch.where(dx == 0, tangent, (y - y_ref).div_(dx))
        return (grad_out.unflatten(0, (2, self.batch)) * slope).flatten(0, 1)

    def amount(self, signal: Tensor, value: Tensor) -> Tensor | None:
        """Contributions carried through ``value``: sum of multiplier x Δ over the input half.

        The batch is the first dimension of size ``2 * batch`` (attention runs sequence-first).
        """
        if signal.shape != value.shape or 2 * self.batch not in value.shape:
            return None
        dim = value.shape.index(2 * self.batch)
        x, x_ref = value.movedim(dim, 0).chunk(2)
        part = signal.movedim(dim, 0)[: self.batch] * (x - x_ref)
        return part.flatten(1).sum(1) if part.ndim > 1 else part

    def overrides(self) -> dict[Callable, Callable[..., Any]]:
        """Max-pooling replaced by :class:`_MaxPoolRescale` for paired calls (see module notes)."""
        return {func: self._max_pool(func, at) for func, at in _MAX_POOLS.items()}

    def _max_pool(self, func: Callable[..., Any], at: int) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            x = args[0] if args else kwargs.get("input")
            asked = bool(args[at]) if len(args) > at else bool(kwargs.get("return_indices", False))
            if asked or not isinstance(x, Tensor) or not x.requires_grad:
                return func(*args, **kwargs)
            if not self.paired(x) or x.ndim < 3:
                self.unpaired += 1
                return func(*args, **kwargs)
            rest = args[1:at]
            kw = {k: v for k, v in kwargs.items() if k not in ("input", "return_indices")}

            def pool(t: Tensor) -> tuple[Tensor, Tensor]:
                return func(t, *rest, **kw, return_indices=True)

            return _MaxPoolRescale.apply(x, pool)

        return call


_MAX_POOLS: dict[Callable[..., Any], int] = {
    F.max_pool1d: 6, F.max_pool2d: 6, F.max_pool3d: 6,
    F.adaptive_max_pool1d: 2, F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 2}
"""Max-pooling functions -> position of their ``return_indices`` argument."""


class _MaxPoolRescale(torch.autograd.Function):
    """Max-pool forward; backward hands each window's Δy to one position (module notes)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, pool: Callable[[Tensor], tuple[Tensor, Tensor]]) -> Tensor:  # type: ignore[override]
        out, idx = pool(x)
        ctx.save_for_backward(x, idx)  # as PyTorch's own backward: the output may change in place
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None]:
        x, idx = ctx.saved_tensors
        x_in, x_ref = x.chunk(2)
        y, y_ref = x.flatten(2).gather(2, idx.flatten(2)).view_as(idx).chunk(2)
        i_in, i_ref = idx.chunk(2)
        chosen = torch.where(y >= y_ref, i_in, i_ref).flatten(2)
        dy = (y - y_ref).flatten(2)
        dx = (x_in - x_ref).flatten(2)
        halves = []
        for g, plain_idx in zip(grad_out.flatten(2).chunk(2), (i_in, i_ref)):
            moved = torch.zeros_like(dx).scatter_add_(2, chosen, g * dy)
            plain = torch.zeros_like(dx).scatter_add_(2, plain_idx.flatten(2), g)
            halves.append(torch.where(dx == 0, plain, moved / torch.where(dx == 0, 1, dx)))
        return torch.cat(halves).view_as(x), None


@register("deeplift", family="decomposition", signed=True)
class DeepLift(Attribution):
    """DeepLIFT, rescale rule (Shrikumar et al. 2017): contributions that sum to t(x) - t(x_ref).

    Options: ``reference`` "black" (pixel value 0), "mean" (normalized zero = mean colour),
    "blur" (Gaussian blur with ``sigma`` pixels), "uniform" or a model-input tensor broadcastable
    to the inputs (see :mod:`.baselines`).
    Warns when the contributions miss t(x) - t(x_ref) by more than 1%, naming the layers that
    broke summation-to-delta and by how much (see the module notes).
    """

    needs_rules = True

    def __init__(self, model: Model, *, reference: BaselineName | Tensor | tuple[Tensor, ...] = "black",
                 sigma: float = 10.0) -> None:
        super().__init__(model)
        reference = check_baseline("reference", reference)  # type: ignore[assignment]
        check_positive("sigma", sigma)
        self.reference, self.sigma = reference, sigma

    def references(self, inputs: Tensor) -> Tensor:
        """The reference x_ref for each input, shaped as the inputs, in model-input space."""
        return self.baseline_for(inputs, self.reference, sigma=self.sigma, name="reference")

    def _pair_scores(self, logits: Tensor, batch: int, target: Target) -> tuple[Tensor, Tensor]:
        """Scores (B,) of input and reference for the target read on the input half."""
        half, ref = logits[:batch], logits[batch:]
        idx = target_indices(half.detach(), target, self.model.labels)
        chosen = target if idx is None else idx
        return select(half, chosen, self.model.labels), select(ref, chosen, self.model.labels)

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        return self.contributions(inputs, self.references(inputs), target)

    def contributions(self, inputs: Tensor, ref: Tensor, target: Target) -> Tensor:
        """Contributions (shaped as ``inputs``) to t(x) - t(x_ref) for references ``ref`` given
        row by row (DeepLIFT-SHAP pairs each input with many); warns when they miss the sum."""
        batch = inputs.shape[0]
        ref = ref.detach()
        x = inputs.detach().requires_grad_(True)
        rule = RescaleRule(batch)
        block_of = backward_rule(rule, overrides=rule.overrides(), net=self.model.net)
        with torch.enable_grad(), block_of as block:
            scores, ref_scores = self._pair_scores(self.model(torch.cat([x, ref])), batch, target)
            (multipliers,) = torch.autograd.grad(scores.sum(), x)
        attributions = multipliers * (inputs - ref)
        self._check_sum(attributions, scores.detach(), ref_scores.detach(), rule, block.gaps)
        return attributions

    @staticmethod
    def _check_sum(attributions: Tensor, scores: Tensor, ref_scores: Tensor, rule: RescaleRule,
                   gaps: list[Gap]) -> None:
        """Warn when summation-to-delta fails; the scale floor keeps Δt ~ 0 (x ~ x_ref) quiet."""
        delta = scores - ref_scores
        gap = (attributions.flatten(1).sum(1) - delta).abs()
        scale = delta.abs() + 1e-3 * (scores.abs() + ref_scores.abs()) + 1e-12
        worst = float((gap / scale).max())
        if worst <= GAP_TOLERANCE:
            return
        culprits = gap_report(gaps, scale, "of t(x) - t(x_ref)", GAP_TOLERANCE)
        if culprits:
            why = (f"these layers break summation-to-delta (contributions at their output minus "
                   f"at their inputs; their gradient is kept): {culprits}")
        else:
            why = ("the network has nonlinearities the rules cannot see (TorchScript modules, "
                   "hand-written maxima such as x.amax(...)), which keep their gradients")
        if rule.unpaired:
            why += f"; {rule.unpaired} calls could not be paired (the network reshapes its batch)"
        warn(f"DeepLIFT contributions miss t(x) - t(x_ref) by {100 * worst:.1f}%: {why}")

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
