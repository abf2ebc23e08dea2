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
with ``min=0``, each also in place. TorchScript modules run below Python and are invisible:
``block.calls`` stays 0.

Rules that set :attr:`BackwardRule.elementwise` (DeepLIFT's rescale rule, LRP's pass-through) also
get every other single-input elementwise nonlinearity: sigmoid, tanh, softplus, ELU, SELU, CELU,
GELU, SiLU, Mish, hardswish, hardsigmoid, leaky ReLU, hardtanh and scalar clamps with other
bounds, log-sigmoid, softsign, PReLU (module and functional calls, ``Tensor`` methods, in place or
not). Their :class:`ActivationCall` carries the function (``call.fn``) and :meth:`~ActivationCall.
tangent` gives its plain local derivative. Guided backprop and the deconvnet leave them alone.

Rules that define :meth:`BackwardRule.amount` (what they conserve: DeepLIFT's contributions,
LRP's relevance) also have every call *watched* whose plain gradient breaks that conservation
(normalizations with statistics of their input, softmax, products of two input-dependent tensors,
attention: :mod:`convscope.model.watch`). A watched call keeps its plain gradient, and its
backward records what it added or lost, with the name of the module that made the call
(``block.gaps``), so a method can say which layer broke its guarantee and by how much. The
module names come from global module hooks that live exactly as long as the block.

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
from torch import Tensor, nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode

from ..errors import BadArgument
from .compat import function_mode_stack, torch_function_disabled
from .guard import own_hook
from .watch import Gap, watch_call, watched
from .watch import call_arg as _arg


@dataclass
class ActivationCall:
    """One call of a rectifier ``out = clamp(inp, lo, hi)`` inside a rule block.

    ``index`` counts routed calls in the block (0, 1, ...; it goes on across forward passes).
    ``inp`` may be ``None`` unless the rule sets ``needs_input`` (a copy for in-place calls).
    ``state`` is the same dict in ``forward`` and ``backward`` of one call. ``fn`` is ``None`` for
    a rectifier and the (out-of-place) function for another elementwise nonlinearity, whose
    ``lo``/``hi`` are then meaningless (-inf, None); in its backward ``out`` is recomputed from
    ``inp``, or empty for rules without ``needs_input``.
    """

    index: int
    lo: float
    hi: float | None
    inp: Tensor | None
    out: Tensor
    state: dict[str, Any] = field(default_factory=dict)
    fn: Callable[[Tensor], Tensor] | None = None

    def tangent(self, inp: Tensor | None = None, out: Tensor | None = None) -> Tensor:
        """The plain local derivative d out / d inp, elementwise (at ``inp``/``out`` if given).

        For a rectifier the 0/1 mask, read from the output; otherwise the function's own
        derivative by autograd (it needs the input: rules that use it set ``needs_input``).
        """
        inp = self.inp if inp is None else inp
        out = self.out if out is None else out
        if self.fn is None:
            return ActivationCall(self.index, self.lo, self.hi, inp, out).mask()
        assert inp is not None, "tangent() of an elementwise call needs the rule's needs_input"
        with torch.enable_grad():
            leaf = inp.detach().requires_grad_(True)
            y = self.fn(leaf)
            (grad,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
        return grad

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
    elementwise: ClassVar[bool] = False
    """Also route the other single-input elementwise nonlinearities (sigmoid, tanh, GELU, ...)."""

    def forward(self, call: ActivationCall) -> None:
        """Called once per routed call during the forward pass; may fill ``call.state``."""

    def backward(self, call: ActivationCall, grad_out: Tensor) -> Tensor:
        """The signal sent to the rectifier's input given the signal at its output."""
        raise NotImplementedError

    def amount(self, signal: Tensor, value: Tensor) -> Tensor | None:
        """What the rule conserves, per sample, carried by ``signal`` at a tensor ``value``.

        ``None`` (the default) means the rule promises no conservation and nothing is watched;
        rules that return a per-sample tensor get ``block.gaps`` (see the module notes).
        """
        return None

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
    fn: Callable[[Tensor], Tensor] | None = None
    """The out-of-place function of an elementwise (non-rectifier) call, else ``None``."""


class _Rectify(torch.autograd.Function):
    """Original forward (in place when the call was), backward delegated to a rule."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, inp: Tensor, compute: Callable[[Tensor], Tensor], rule: BackwardRule, where: _Where
    ) -> Tensor:
        # An elementwise call keeps its input only for rules that read it, and never its output
        # (which the network may change in place, as PyTorch allows after GELU or SiLU).
        keep_input = rule.needs_input or (not where.saves_output and where.fn is None)
        kept = (inp.clone() if where.inplace else inp) if keep_input else None
        out = compute(inp)
        if where.inplace:
            ctx.mark_dirty(inp)
        call = ActivationCall(where.index, where.lo, where.hi, inp=kept, out=out, fn=where.fn)
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
            if out is None and where.fn is not None:
                out = where.fn(kept) if kept is not None else grad_out.new_empty(0)
            elif out is None:
                out = kept.clamp(min=where.lo, max=where.hi)
            call = ActivationCall(where.index, where.lo, where.hi, kept, out, ctx.state, where.fn)
            grad_in = ctx.rule.backward(call, grad_out)
        return grad_in, None, None, None


_Bounds = tuple[float, float | None, bool]


def _bounds(func: Callable, args: tuple, kwargs: Mapping[str, Any]) -> _Bounds | None:
    """``(lo, hi, inplace)`` when ``func(*args, **kwargs)`` is a rectifier with ``lo == 0``."""
    if func in _RELU:
        return 0.0, None, func in _INPLACE or bool(_arg(args, kwargs, 1, "inplace", False))
    if func is F.relu6:
        return 0.0, 6.0, bool(_arg(args, kwargs, 1, "inplace", False))
    clamp = _clamp_bounds(func, args, kwargs)
    if clamp is None:
        return None
    lo, hi, inplace = clamp
    if not isinstance(lo, Real) or lo != 0:
        return None
    if hi is not None and (not isinstance(hi, Real) or hi <= 0):
        return None
    return 0.0, (float(hi) if hi is not None else None), inplace


def _clamp_bounds(func: Callable, args: tuple, kwargs: Mapping[str, Any]) -> tuple[Any, Any, bool] | None:
    """``(lo, hi, inplace)`` as passed, for hardtanh and the clamps; ``None`` for other functions."""
    if func in (F.hardtanh, F.hardtanh_):
        lo, hi = _arg(args, kwargs, 1, "min_val", -1.0), _arg(args, kwargs, 2, "max_val", 1.0)
        return lo, hi, func is F.hardtanh_ or bool(_arg(args, kwargs, 3, "inplace", False))
    if func in _CLAMP:
        return _arg(args, kwargs, 1, "min", None), _arg(args, kwargs, 2, "max", None), func in _INPLACE
    if func in _CLAMP_MIN:
        return _arg(args, kwargs, 1, "min", None), None, func in _INPLACE
    return None


def _elementwise(func: Callable, args: tuple, kwargs: Mapping[str, Any]) -> tuple[Callable, bool] | None:
    """``(out-of-place function, inplace)`` for a single-input elementwise nonlinearity call."""
    rest = args[1:]
    kw = {k: v for k, v in kwargs.items() if k not in ("input", "inplace")}
    clamp = _clamp_bounds(func, args, kwargs)
    if clamp is not None:  # hardtanh / clamp with bounds other than a rectifier's
        lo, hi, inplace = clamp
        if any(b is not None and not isinstance(b, Real) for b in (lo, hi)):
            return None  # tensor bounds: not a function of one input
        return (lambda t: torch.clamp(t, lo, hi)), inplace
    if func in _ELEMENTWISE_INPLACE:
        plain = _ELEMENTWISE_INPLACE[func]
        return (lambda t: plain(t, *rest, **kw)), True
    if func not in _ELEMENTWISE:
        return None
    at = _ELEMENTWISE[func]
    inplace = bool(kwargs.get("inplace", False) or (at is not None and len(args) > at and args[at]))
    if at is not None and len(args) > at:
        rest = args[1:at] + args[at + 1:]
    return (lambda t: func(t, *rest, **kw)), inplace


_RELU = {F.relu, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_}
_CLAMP = {torch.clamp, torch.clamp_, torch.clip, torch.clip_, Tensor.clamp, Tensor.clamp_,
          Tensor.clip, Tensor.clip_}
_CLAMP_MIN = {torch.clamp_min, torch.clamp_min_, Tensor.clamp_min, Tensor.clamp_min_}
_INPLACE = {torch.relu_, Tensor.relu_, torch.clamp_, torch.clip_, Tensor.clamp_, Tensor.clip_,
            torch.clamp_min_, Tensor.clamp_min_}
_ELEMENTWISE: dict[Callable, int | None] = {
    torch.sigmoid: None, Tensor.sigmoid: None, torch.tanh: None, Tensor.tanh: None,
    F.softplus: None, F.gelu: None, F.logsigmoid: None, F.softsign: None, F.tanhshrink: None,
    F.prelu: None, F.elu: 2, F.celu: 2, F.leaky_relu: 2, F.selu: 1, F.silu: 1, F.mish: 1,
    F.hardswish: 1, F.hardsigmoid: 1,
}
"""Single-input elementwise nonlinearities -> position of their ``inplace`` flag (``None``: none)."""
_ELEMENTWISE_INPLACE: dict[Callable, Callable] = {
    torch.sigmoid_: torch.sigmoid, Tensor.sigmoid_: torch.sigmoid, torch.tanh_: torch.tanh,
    Tensor.tanh_: torch.tanh, F.elu_: F.elu, F.celu_: F.celu, F.leaky_relu_: F.leaky_relu,
    F.selu_: F.selu,
}
"""Always-in-place spellings -> their out-of-place function (same other arguments)."""


class _RuleMode(TorchFunctionMode):
    """Routes rectifier calls (and other elementwise ones, for rules that take them) to
    :class:`_Rectify` and watches calls that break the rule's conservation (:mod:`.watch`);
    ``overrides`` replace other functions."""

    def __init__(self, rule: BackwardRule, overrides: Mapping[Callable, Callable[..., Any]]) -> None:
        super().__init__()
        self.rule = rule
        self.overrides = dict(overrides)
        self.calls = 0
        self.watching = type(rule).amount is not BackwardRule.amount
        self.gaps: list[Gap] = []
        self.modules: list[str] = []
        self.names: dict[int, str] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in self.overrides:
            return self.overrides[func](*args, **kwargs)
        inp = args[0] if args else kwargs.get("input")
        if "out" in kwargs:
            return func(*args, **kwargs)
        floating = isinstance(inp, Tensor) and inp.is_floating_point()
        spec = _bounds(func, args, kwargs) if floating else None
        if spec is not None:
            lo, hi, inplace = spec
            where = _Where(self.calls, lo, hi, inplace, inplace or func in _RELU)
        elif floating and self.rule.elementwise and (found := _elementwise(func, args, kwargs)) is not None:
            fn, inplace = found
            where = _Where(self.calls, float("-inf"), None, inplace, False, fn)
        elif self.watching and watched(func, args, kwargs):
            layer = self.modules[-1] if self.modules else "(top level)"
            return watch_call(func, args, kwargs, self.rule.amount, layer, self.gaps)
        else:
            return func(*args, **kwargs)
        self.calls += 1
        rest = args[1:]
        kw = {k: v for k, v in kwargs.items() if k != "input"}

        def compute(t: Tensor) -> Tensor:
            return func(t, *rest, **kw)

        return _Rectify.apply(inp, compute, self.rule, where)

    def enter_module(self, module: nn.Module, *_: Any) -> None:
        self.modules.append(self.names.get(id(module), type(module).__name__))

    def exit_module(self, *_: Any) -> None:
        if self.modules:
            self.modules.pop()


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
        """Calls routed to the rule so far in this block (rectifiers, and elementwise ones if the
        rule takes them)."""
        return self._mode.calls

    @property
    def gaps(self) -> list[Gap]:
        """Watched calls and their conservation gaps, filled by the backward pass (see module notes)."""
        return self._mode.gaps

    @property
    def module(self) -> str:
        """Dotted name of the module whose forward is running now (the network's class name at
        the top level), for overrides to name the calls they route."""
        return self._mode.modules[-1] if self._mode.modules else "(top level)"


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
    net: nn.Module | None = None,
) -> Iterator[RuleBlock]:
    """Within the block, every rectifier call backpropagates through ``rule``.

    Args:
        rule: e.g. :data:`GUIDED`, :data:`DECONV`, :data:`LINEAR` or a :class:`BackwardRule`.
        overrides: other torch functions to replace in the block, ``{F.max_pool2d: fn}``; ``fn``
            gets the original arguments and runs with the mode suspended (used by receptive
            fields to spread max-pool gradients over the whole window).
        net: the network, to name the layers in ``block.gaps`` by their dotted names (otherwise
            by class name). Only rules with an :meth:`~BackwardRule.amount` watch calls; for them
            the block tracks the running module with global module hooks, removed on exit.

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
    hooks = []
    if mode.watching:
        if net is not None:
            mode.names = {id(m): name or type(m).__name__ for name, m in net.named_modules()}
        hooks = [register_module_forward_pre_hook(own_hook(mode.enter_module)),
                 register_module_forward_hook(own_hook(mode.exit_module), always_call=True)]
    try:
        with mode:
            yield RuleBlock(mode)
    finally:
        for hook in hooks:
            hook.remove()
