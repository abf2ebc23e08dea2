"""Temporary backward rules for rectifiers: guided backprop, deconvnet, and the rules built on them.

Guided backpropagation (Springenberg et al. 2015, "Striving for Simplicity", Sec. 3.4, Fig. 1) and
the deconvnet (Zeiler & Fergus 2014, Sec. 2.1) differ from the plain gradient only in how a
rectifier ``y = clamp(x, 0, hi)`` passes the signal ``R = dL/dy`` back:

* plain gradient: ``R * 1[lo < x < hi]``
* deconvnet:      ``max(R, 0)`` (ignores the forward mask)
* guided:         ``max(R, 0) * 1[lo < x < hi]`` (both masks)

DeepLIFT's rescale rule and the LRP rules change the same places, and later modules plug in by
implementing :class:`BackwardRule`. A rule sees one :class:`ActivationCall` per rectifier call
(input, output, clamp bounds, position in the block and a ``state`` dict that the rule's
``forward`` may fill, e.g. with a reference activation).

Why a ``TorchFunctionMode`` and not module hooks: users' networks apply rectifiers as modules
(``nn.ReLU``, ``nn.ReLU6``, in-place or not), as functions (``F.relu``, ``F.relu6``,
``torch.relu``, ``torch.clamp(min=0)``) and as tensor methods (``x.relu_()``). Module backward
hooks see only the first kind and break on in-place ones; that is how the reference libraries end
up returning the plain gradient without a word (Captum's guided backprop on a ReLU6 network is one
example). A mode sees every call in the block, whatever its spelling, and routes it to
:class:`_Rectify`, a custom ``autograd.Function`` whose forward calls the original function with
the original arguments (bit-identical outputs, in-place stays in-place) and whose backward asks
the rule. Nothing is attached to the model, so nothing can be left behind.

Routed: ``nn.ReLU``/``nn.ReLU6`` (through ``F.relu``/``F.hardtanh``), ``F.relu``, ``F.relu6``,
``F.hardtanh(x, 0, hi)``, ``torch.relu``, ``Tensor.relu`` and ``torch.clamp``/``clip``/``clamp_min``
with ``min=0``, each also in place. Other clamps, leaky ReLU, GELU, SiLU keep their plain
gradients. TorchScript modules run below Python and are invisible: ``block.calls`` stays 0.

Scope: the mode is pushed on entering ``with backward_rule(...)`` and popped in ``finally``.
Graphs recorded inside the block keep their rule even if differentiated after it; forwards run
after the block get plain gradients. Blocks do not nest (the inner rule would be applied on top
of the outer one), so a nested block raises :class:`~convscope.errors.BadArgument`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from ..errors import BadArgument
from .compat import function_mode_stack, torch_function_disabled


@dataclass
class ActivationCall:
    """One call of a rectifier ``out = clamp(inp, lo, hi)`` inside a rule block.

    ``index`` counts rectifier calls in the block (0, 1, ...; it goes on across forward passes).
    ``inp`` may be ``None`` unless the rule sets ``needs_input`` (a copy for in-place calls).
    ``state`` is the same dict in ``forward`` and ``backward`` of one call.
    """

    index: int
    lo: float
    hi: float | None
    inp: Tensor | None
    out: Tensor
    state: dict[str, Any] = field(default_factory=dict)

    def mask(self) -> Tensor:
        """The plain local derivative ``1[lo < inp < hi]`` as 0/1, read from the output.

        For a clamp the output is strictly inside ``(lo, hi)`` exactly where the input is, which
        matches PyTorch's own ReLU/hardtanh backward (zero gradient at the kinks).
        """
        inside = self.out > self.lo
        if self.hi is not None:
            inside &= self.out < self.hi
        return inside.to(self.out.dtype)

    def masked(self, grad: Tensor) -> Tensor:
        """``grad * mask()`` in one fused kernel: PyTorch's own ReLU / hardtanh backward."""
        if self.hi is None:
            return torch.ops.aten.threshold_backward(grad, self.out, self.lo)
        return torch.ops.aten.hardtanh_backward(grad, self.out, self.lo, self.hi)


class BackwardRule:
    """How a rectifier passes gradient back; subclass and override :meth:`backward`.

    Rules that compare with a reference (DeepLIFT) either run input and reference as one batch
    ``cat([x, x_ref])`` and pair the halves of ``call.inp``/``call.out`` in :meth:`backward`, or
    run the reference first in the same block and keep its activations by ``call.index`` from
    :meth:`forward`.
    """

    name: ClassVar[str] = "rule"
    needs_input: ClassVar[bool] = False
    """Keep the rectifier's input for backward (DeepLIFT needs it; guided only needs the output)."""

    def forward(self, call: ActivationCall) -> None:
        """Called once per rectifier call during the forward pass; may fill ``call.state``."""

    def backward(self, call: ActivationCall, grad_out: Tensor) -> Tensor:
        """The signal sent to the rectifier's input given the signal at its output."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<backward rule {self.name}>"


class GuidedRule(BackwardRule):
    """Guided backprop: positive signal only, and only where the unit was active."""

    name = "guided"

    def backward(self, call: ActivationCall, grad_out: Tensor) -> Tensor:
        return call.masked(grad_out.clamp(min=0))


class DeconvRule(BackwardRule):
    """Deconvnet: the rectifier is applied to the backward signal, the forward mask is ignored."""

    name = "deconv"

    def backward(self, call: ActivationCall, grad_out: Tensor) -> Tensor:
        return grad_out.clamp(min=0)


class LinearRule(BackwardRule):
    """Every rectifier passes gradient unchanged: the gradient of the linearized network.

    Used to measure receptive fields, where dead units must not hide input pixels.
    """

    name = "linear"

    def backward(self, call: ActivationCall, grad_out: Tensor) -> Tensor:
        return grad_out


GUIDED = GuidedRule()
DECONV = DeconvRule()
LINEAR = LinearRule()


class _Where(NamedTuple):
    """One routed call: its index in the block, clamp bounds, and how PyTorch would save it."""

    index: int  # type: ignore[assignment]  # a field may shadow tuple.index
    lo: float
    hi: float | None
    inplace: bool
    saves_output: bool
    """PyTorch's own backward keeps the output (ReLU, every in-place call) rather than the input
    (hardtanh/ReLU6, clamp); keeping the same tensor keeps the same in-place-safety."""


class _Rectify(torch.autograd.Function):
    """Original forward (in place when the call was), backward delegated to a rule."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, inp: Tensor, compute: Callable[[Tensor], Tensor], rule: BackwardRule, where: _Where
    ) -> Tensor:
        keep_input = rule.needs_input or not where.saves_output
        kept = (inp.clone() if where.inplace else inp) if keep_input else None
        out = compute(inp)
        if where.inplace:
            ctx.mark_dirty(inp)
        call = ActivationCall(where.index, where.lo, where.hi, inp=kept, out=out)
        rule.forward(call)
        # save_for_backward checks versions (tensors kept on ctx would be silently stale)
        ctx.save_for_backward(kept, out if where.saves_output else None)
        ctx.rule, ctx.where, ctx.state = rule, where, call.state
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None, None]:
        kept, out = ctx.saved_tensors
        where: _Where = ctx.where
        # The rule's own tensor ops must not be routed back into a still-active mode.
        with torch_function_disabled():
            if out is None:
                out = kept.clamp(min=where.lo, max=where.hi)
            call = ActivationCall(where.index, where.lo, where.hi, kept, out, ctx.state)
            grad_in = ctx.rule.backward(call, grad_out)
        return grad_in, None, None, None


def _arg(args: tuple, kwargs: Mapping[str, Any], pos: int, name: str, default: Any) -> Any:
    if len(args) > pos:
        return args[pos]
    return kwargs.get(name, default)


_Bounds = tuple[float, float | None, bool]


def _bounds(func: Callable, args: tuple, kwargs: Mapping[str, Any]) -> _Bounds | None:
    """``(lo, hi, inplace)`` when ``func(*args, **kwargs)`` is a rectifier with ``lo == 0``."""
    if func in _RELU:
        return 0.0, None, func in _INPLACE or bool(_arg(args, kwargs, 1, "inplace", False))
    if func is F.relu6:
        return 0.0, 6.0, bool(_arg(args, kwargs, 1, "inplace", False))
    if func in (F.hardtanh, F.hardtanh_):
        lo, hi = _arg(args, kwargs, 1, "min_val", -1.0), _arg(args, kwargs, 2, "max_val", 1.0)
        inplace = func is F.hardtanh_ or bool(_arg(args, kwargs, 3, "inplace", False))
    elif func in _CLAMP:
        lo, hi = _arg(args, kwargs, 1, "min", None), _arg(args, kwargs, 2, "max", None)
        inplace = func in _INPLACE
    elif func in _CLAMP_MIN:
        lo, hi, inplace = _arg(args, kwargs, 1, "min", None), None, func in _INPLACE
    else:
        return None
    if not isinstance(lo, Real) or lo != 0:
        return None
    if hi is not None and (not isinstance(hi, Real) or hi <= 0):
        return None
    return 0.0, (float(hi) if hi is not None else None), inplace


_RELU = {F.relu, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_}
_CLAMP = {torch.clamp, torch.clamp_, torch.clip, torch.clip_, Tensor.clamp, Tensor.clamp_,
          Tensor.clip, Tensor.clip_}
_CLAMP_MIN = {torch.clamp_min, torch.clamp_min_, Tensor.clamp_min, Tensor.clamp_min_}
_INPLACE = {torch.relu_, Tensor.relu_, torch.clamp_, torch.clip_, Tensor.clamp_, Tensor.clip_,
            torch.clamp_min_, Tensor.clamp_min_}


class _RuleMode(TorchFunctionMode):
    """Routes rectifier calls to :class:`_Rectify`; ``overrides`` replace other functions."""

    def __init__(self, rule: BackwardRule, overrides: Mapping[Callable, Callable[..., Any]]) -> None:
        super().__init__()
        self.rule = rule
        self.overrides = dict(overrides)
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in self.overrides:
            return self.overrides[func](*args, **kwargs)
        spec = _bounds(func, args, kwargs) if "out" not in kwargs else None
        inp = args[0] if args else kwargs.get("input")
        if spec is None or not isinstance(inp, Tensor) or not inp.is_floating_point():
            return func(*args, **kwargs)
        lo, hi, inplace = spec
        where = _Where(self.calls, lo, hi, inplace, inplace or func in _RELU)
        self.calls += 1
        rest = args[1:]
        kw = {k: v for k, v in kwargs.items() if k != "input"}

        def compute(t: Tensor) -> Tensor:
            return func(t, *rest, **kw)

        return _Rectify.apply(inp, compute, self.rule, where)


class RuleBlock:
    """What ``with backward_rule(rule) as block`` gives: the rule and how many calls it took.

    ``block.calls == 0`` after a forward pass means the mode saw no rectifier: the model has none
    or hides them from Python (a TorchScript module), so the "rule" gradient is the plain one and
    a method should say so rather than return it silently.
    """

    def __init__(self, mode: _RuleMode) -> None:
        self._mode = mode

    @property
    def rule(self) -> BackwardRule:
        return self._mode.rule

    @property
    def calls(self) -> int:
        """Rectifier calls routed to the rule so far in this block."""
        return self._mode.calls


def active_rule() -> BackwardRule | None:
    """The rule of the innermost active :func:`backward_rule` block in this thread, if any."""
    for mode in reversed(function_mode_stack()):
        if isinstance(mode, _RuleMode):
            return mode.rule
    return None


@contextmanager
def backward_rule(
    rule: BackwardRule,
    *,
    overrides: Mapping[Callable, Callable[..., Any]] | None = None,
) -> Iterator[RuleBlock]:
    """Within the block, every rectifier call backpropagates through ``rule``.

    Args:
        rule: e.g. :data:`GUIDED`, :data:`DECONV`, :data:`LINEAR` or a :class:`BackwardRule`.
        overrides: other torch functions to replace in the block, ``{F.max_pool2d: fn}``; ``fn``
            gets the original arguments and runs with the mode suspended (used by receptive
            fields to spread max-pool gradients over the whole window).

    Forward values are exactly the original functions'. Raises :class:`BadArgument` when nested.
    Yields a :class:`RuleBlock` (``block.calls`` counts the rectifier calls routed).
    """
    if not isinstance(rule, BackwardRule):
        raise BadArgument(f"backward rule {rule!r} is not a BackwardRule; use e.g. rules.GUIDED")
    current = active_rule()
    if current is not None:
        raise BadArgument(
            f"backward_rule({rule.name}) inside backward_rule({current.name}): rule blocks do not "
            "nest; end the outer block first"
        )
    mode = _RuleMode(rule, overrides or {})
    with mode:
        yield RuleBlock(mode)
