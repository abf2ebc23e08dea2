"""One LRP backward pass: every operation of the forward pass routed to its relevance rule.

The signal that flows backward is the relevance itself (not a gradient): it starts as the target
logit at the output and reaches the input as the map. Each operation of the forward pass is sent
through :class:`_Relevance`, an ``autograd.Function`` whose forward is the original computation and
whose backward maps output relevance to input relevance, by kind:

* conv/dense (``F.conv1d/2d/3d``, ``F.linear``): the layer's :class:`~.rules.LayerRule`, picked by
  a :class:`~.composites.RuleMap` from the layer's kind, its name (found by the identity of its
  weight tensor among the network's parameters) and whether it is the first layer called.
* sums of tensors (residual adds ``a + b``, ``torch.add``, ``+=``), means and sums over axes,
  average pooling (``avg_pool``, ``adaptive_avg_pool``, ``x.mean((2, 3))``): these are linear
  maps y = sum_i c_i x_i without weights of their own, and relevance is split in proportion to
  the contributions, R_i = c_i x_i / (y + eps sign y) R (zennit's ``Norm`` rule: LRP-0 with the
  rules' stabilizer, 1e-6 by default). For a residual add this gives each branch its share
  a/(a+b) and b/(a+b); the plain gradient would hand R to both and double the total. A constant
  operand (a tensor that does not depend on the input) keeps its share, as a bias does.
* elementwise activations (ReLU, ReLU6, leaky ReLU, ELU, GELU, SiLU, hardswish, softplus, tanh,
  sigmoid, ..., module, functional or in place): pass-through, R_in = R_out, as zennit's ``Pass``
  rule does for every activation. :class:`RelevancePass` is that rule for the mode of
  :mod:`convscope.model.rules` (which sees every spelling, rectifier or not). Batch norms that
  could not be folded into a conv pass relevance through too.
* everything else keeps its gradient: reshapes, dropout in eval mode, concatenation and
  upsampling move relevance around unchanged; max-pooling gives it to the maximum (the usual
  winner-take-all choice). Products of activations (attention, squeeze-excitation gates),
  softmax and normalizations with statistics of their input (LayerNorm, GroupNorm, batch norm in
  train mode) have no relevance rule: their gradient does not conserve. The mode *watches* them
  (:meth:`RelevancePass.amount` is the relevance sum) and records, per call, the relevance at the
  output minus that at the inputs, with the module that made the call; the method warns with
  the layers whose gap is large. Hand-written ``x @ W`` layers are not watched: not conserving
  either, they are the user's to rewrite as ``F.linear``.

All of it is installed for one forward pass by :func:`~convscope.model.rules.backward_rule`
(a ``TorchFunctionMode`` popped in ``finally``): nothing is attached to any module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ....model.compat import torch_function_disabled
from ....model.rules import ActivationCall, BackwardRule
from ....model.watch import Gap
from .composites import LayerKind, RuleMap
from .rules import Flat, LayerCall, LayerRule, signal_scaled, stabilize

SWALLOW = 100.0
"""A layer whose largest |output| is below SWALLOW x its absolute stabilizer loses >= 1% of its
relevance to the stabilizer even at its largest unit (and most of it elsewhere)."""

Backward = Callable[[Tensor], tuple[Tensor | None, ...]]
Run = Callable[..., tuple[Tensor, Backward]]


class _Relevance(torch.autograd.Function):
    """Forward: ``run(*tensors)``'s output; backward: its relevance function (one per tensor)."""

    @staticmethod
    def forward(ctx: Any, run: Run, inplace: bool, *tensors: Tensor) -> Tensor:  # type: ignore[override]
        out, back = run(*tensors)
        if inplace:
            ctx.mark_dirty(tensors[0])
        ctx.back = back
        return out

    @staticmethod
    def backward(ctx: Any, relevance: Tensor) -> tuple[Tensor | None, ...]:
        with torch_function_disabled():  # a still-active mode must not route the rule's own ops
            parts = ctx.back(relevance)
        del ctx.back  # frees the terms' graphs
        return (None, None, *parts)


_CONV: dict[Callable[..., Tensor], str] = {
    F.conv1d: "conv", F.conv2d: "conv", F.conv3d: "conv", F.linear: "linear"}
_ADD: set[Callable[..., Tensor]] = {torch.add, Tensor.add, Tensor.__add__, Tensor.__radd__}
_ADD_INPLACE: set[Callable[..., Tensor]] = {Tensor.add_, Tensor.__iadd__}
_REDUCE: set[Callable[..., Tensor]] = {
    torch.mean, Tensor.mean, torch.sum, Tensor.sum, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
           F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d}


class RelevancePass(BackwardRule):
    """Every elementwise activation passes relevance unchanged; relevance sums are what is kept."""

    name = "relevance"
    elementwise = True

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def backward(self, call: ActivationCall, grad_out: Tensor) -> Tensor:
        return grad_out

    def amount(self, signal: Tensor, value: Tensor) -> Tensor | None:
        """The relevance at ``value``, per sample: the batch is the first dimension of its size
        (attention runs sequence-first)."""
        if self.batch not in signal.shape:
            return None
        moved = signal.movedim(signal.shape.index(self.batch), 0)
        return moved.flatten(1).sum(1) if moved.ndim > 1 else moved


def _tracked(t: object) -> bool:
    return isinstance(t, Tensor) and t.requires_grad and t.is_floating_point()


class Propagation:
    """The overrides for one forward pass of ``net`` under a :class:`RuleMap`.

    ``low``/``high`` bound the network input (z^B); ``stabilizer`` is the proportional split's;
    ``relative`` scales every stabilizer by the signal (:meth:`.rules.LayerCall.eps`).
    ``layers`` counts the conv/dense calls routed, so a caller can tell a network whose layers
    the mode never saw (TorchScript). ``swallowed`` lists the layers (name, smallest over the batch
    of the largest |output|, stabilizer) whose outputs are not large against an absolute
    stabilizer (below :data:`SWALLOW` times it): there the stabilizer absorbs the relevance.
    ``absorbed`` has one :class:`~convscope.model.watch.Gap` per conv/dense call: the relevance
    at its output minus that at its input, per sample (what its bias and stabilizer kept or added).
    """

    def __init__(self, rules: RuleMap, net: nn.Module, low: Tensor | None = None,
                 high: Tensor | None = None, stabilizer: float = 1e-6, relative: bool = False) -> None:
        self.rules = rules
        self.low, self.high, self.stabilizer, self.relative = low, high, stabilizer, relative
        self.names = {id(m.weight): name for name, m in net.named_modules()
                      if isinstance(getattr(m, "weight", None), Tensor)}
        self.layers = 0
        self.swallowed: list[tuple[str, float, float]] = []
        self.absorbed: list[Gap] = []
        self.where: Callable[[], str] = lambda: "(top level)"
        """The module running now (the rule block's :attr:`~convscope.model.rules.RuleBlock.module`)."""

    def overrides(self) -> dict[Callable, Callable[..., Any]]:
        table: dict[Callable, Callable[..., Any]] = {}
        for func, kind in _CONV.items():
            table[func] = self._layer(func, kind)  # type: ignore[arg-type]
        for func in _ADD | _REDUCE:
            table[func] = self._norm(func, None)
        for func in _ADD_INPLACE:
            table[func] = self._norm(torch.add, func)
        table[F.batch_norm] = _batch_norm_pass
        return table

    def _layer(self, func: Callable[..., Tensor], kind: LayerKind) -> Callable[..., Tensor]:
        def call(*args: Any, **kwargs: Any) -> Tensor:
            bound = dict(zip(("input", "weight", "bias"), args), **kwargs)
            x, weight, bias = bound.pop("input"), bound.pop("weight"), bound.pop("bias", None)
            if not _tracked(x) or "out" in bound:
                return func(*args, **kwargs)
            rest = args[3:]

            def fn(inp: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
                return func(inp, w, b, *rest, **bound)

            first = self.layers == 0
            rule = self.rules.rule_for(kind, self.names.get(id(weight)), first)
            self.layers += 1

            name = self.names.get(id(weight), f"{func.__name__} call {self.layers}")

            def run(inp: Tensor) -> tuple[Tensor, Backward]:
                layer = LayerCall(fn, inp, weight.detach(), None if bias is None else bias.detach(),
                                  name=name, nonneg=bool(inp.amin() >= 0),
                                  low=self.low if first else None, high=self.high if first else None,
                                  relative=self.relative)
                out, back = rule.forward(layer)
                self._check_scale(name, rule, out)

                def absorbing(r: Tensor) -> tuple[Tensor]:
                    given = back(r)
                    self._absorb(name, func.__name__, r, [given])
                    return (given,)

                return out, absorbing

            return _Relevance.apply(run, False, x)

        return call

    def _absorb(self, name: str, op: str, out: Tensor, given: list[Tensor | None]) -> None:
        """Record the relevance a call kept (to biases, constants, stabilizers): its output's
        minus its inputs', per sample, where every tensor is batch-first."""
        parts = [g for g in given if g is not None]
        if out.ndim < 1 or any(g.ndim < 1 or g.shape[0] != out.shape[0] for g in parts):
            return
        kept = out.flatten(1).sum(1) if out.ndim > 1 else out.clone()
        for g in parts:
            kept = kept - (g.flatten(1).sum(1) if g.ndim > 1 else g)
        self.absorbed.append(Gap(name, op, kept))

    def _check_scale(self, name: str, rule: LayerRule, out: Tensor) -> None:
        """Record the layer when an absolute stabilizer is not small against its outputs."""
        eps = getattr(rule, "epsilon", getattr(rule, "stabilizer", 0.0))
        if self.relative or isinstance(rule, Flat) or not eps or out.ndim < 2:
            return
        largest = float(out.detach().abs().flatten(1).amax(1).min())
        if largest < SWALLOW * eps:
            self.swallowed.append((name, largest, eps))

    def _norm(self, graph_func: Callable[..., Tensor], inplace: Callable | None) -> Callable[..., Tensor]:
        """Proportional split over the tensor operands of a linear map without weights."""
        original = inplace or graph_func
        op = getattr(original, "__name__", "add").strip("_")

        def call(*args: Any, **kwargs: Any) -> Tensor:
            name = self.where()
            slots = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.is_floating_point()]
            if "out" in kwargs or not any(_tracked(args[i]) for i in slots):
                return original(*args, **kwargs)

            def run(*tensors: Tensor) -> tuple[Tensor, Backward]:
                leaves = [t.detach().clone() if inplace and k == 0 else t.detach()
                          for k, t in enumerate(tensors)]
                leaves = [leaf.requires_grad_(True) for leaf in leaves]
                full = list(args)
                for i, leaf in zip(slots, leaves):
                    full[i] = leaf
                with torch.enable_grad():
                    y = graph_func(*full, **kwargs)
                eps = signal_scaled(self.stabilizer, y) if self.relative and y.ndim > 1 else self.stabilizer
                scale = stabilize(y.detach(), eps).reciprocal_()
                if inplace is not None:
                    with torch.no_grad():
                        out = inplace(*args, **kwargs)
                else:
                    out = y.detach()

                def back(r: Tensor) -> tuple[Tensor | None, ...]:
                    grads = torch.autograd.grad(y, leaves, r * scale, allow_unused=True)
                    parts = tuple(None if g is None else leaf.detach() * g for leaf, g in zip(leaves, grads))
                    self._absorb(name, op, r, [p for p, t in zip(parts, tensors) if _tracked(t)])
                    return parts

                return out, back

            return _Relevance.apply(run, inplace is not None, *(args[i] for i in slots))

        return call


def _batch_norm_pass(*args: Any, **kwargs: Any) -> Tensor:
    """R_in = R_out through a batch norm in eval mode (one that could not be folded)."""
    x = args[0] if args else kwargs.get("input")
    training = args[5] if len(args) > 5 else kwargs.get("training", False)
    if not _tracked(x) or training:
        return F.batch_norm(*args, **kwargs)
    rest = args[1:]
    kw = {k: v for k, v in kwargs.items() if k != "input"}

    def run(inp: Tensor) -> tuple[Tensor, Backward]:
        return F.batch_norm(inp, *rest, **kw), lambda r: (r,)

    return _Relevance.apply(run, False, x)
