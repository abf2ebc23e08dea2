"""Watched calls: operations whose plain gradient breaks what a backward rule conserves.

DeepLIFT's rules conserve the contributions' sum (summation-to-delta), LRP's the relevance
(conservation); a rule says what it conserves through :meth:`~convscope.model.rules.BackwardRule.
amount`. Some operations have no such rule and keep their gradient, which does not conserve:

* normalizations that use statistics of their input: layer/group/instance/RMS norm,
  ``F.normalize``, local response norm, batch norm with batch statistics (``training=True``);
* softmax and log-softmax inside the network;
* products and quotients of two input-dependent tensors (gating x * sigmoid(x), attention), matrix
  products of two such tensors, ``F.scaled_dot_product_attention`` and
  ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``).

:func:`watch_call` runs such a call with its plain forward and gradient, and its backward records
the amount at the output minus the amount at the inputs (a :class:`Gap`, per sample), with the
name of the module that made the call, so a method can name the layer that broke its guarantee
and by how much (:func:`gap_report`). Operands that are parameters (frozen or not) count as
constants: ``x @ W`` and ``x * 2`` are linear in the input and not watched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .compat import torch_function_disabled

Amount = Callable[[Tensor, Tensor], "Tensor | None"]
"""A rule's conserved amount, per sample, carried by a signal at a tensor value."""


def call_arg(args: tuple, kwargs: Mapping[str, Any], pos: int, name: str, default: Any) -> Any:
    """Argument ``name`` of a call, given at position ``pos`` or by keyword."""
    return args[pos] if len(args) > pos else kwargs.get(name, default)


_NORMS = {F.layer_norm, F.group_norm, F.instance_norm, F.rms_norm, F.local_response_norm,
          F.normalize, F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, Tensor.softmax,
          Tensor.log_softmax, F.scaled_dot_product_attention, F.multi_head_attention_forward}
"""Watched when their first input depends on the network input."""
_PRODUCTS = {torch.mul, Tensor.mul, Tensor.__mul__, Tensor.__rmul__, torch.div, Tensor.div,
             Tensor.__truediv__, Tensor.__rtruediv__, torch.matmul, Tensor.matmul, Tensor.__matmul__,
             Tensor.__rmatmul__, torch.bmm, Tensor.bmm, torch.baddbmm, torch.einsum}
"""Watched when two tensor operands depend on the network input (attention, gating)."""


def tracked(t: object) -> bool:
    """A floating tensor that depends on the input (parameters are leaves, frozen or not)."""
    return (isinstance(t, Tensor) and t.requires_grad and t.is_floating_point()
            and not isinstance(t, torch.nn.Parameter))


def _operands(args: tuple, kwargs: Mapping[str, Any]) -> list[tuple[int | str, Tensor]]:
    """The tensor operands, by position or keyword."""
    found: list[tuple[int | str, Tensor]] = []
    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            found.append((i, a))
    for k, v in kwargs.items():
        if isinstance(v, Tensor):
            found.append((k, v))
    return found


def watched(func: Callable, args: tuple, kwargs: Mapping[str, Any]) -> bool:
    """Whether ``func(*args, **kwargs)`` is a call whose gradient breaks conservation (module notes)."""
    if func is F.batch_norm:
        return bool(call_arg(args, kwargs, 5, "training", False)) and tracked(args[0] if args else None)
    if func in _NORMS:
        return any(tracked(t) for _, t in _operands(args, kwargs)[:3])
    if func in _PRODUCTS:
        return sum(tracked(t) for _, t in _operands(args, kwargs)) >= 2
    return False


@dataclass
class Gap:
    """How much of a rule's conserved amount one watched call lost or made up, per sample."""

    layer: str
    """Dotted name of the module that made the call (the network's class name for top-level code)."""
    op: str
    """The operation, e.g. ``layer_norm`` or ``matmul``."""
    gap: Tensor
    """(B,) amount at the output minus the amount at its inputs."""


def gap_report(gaps: list[Gap], scale: Tensor, of: str, tolerance: float, most: int = 3) -> str:
    """The watched calls whose gap exceeds ``tolerance * scale`` in some sample, worst first:
    ``"'blocks.0.norm' (layer_norm) 2.1 (45% of ...)"``; empty when none does."""
    found: dict[tuple[str, str], tuple[float, float]] = {}
    for g in gaps:
        size = g.gap.detach().abs()
        if size.shape != scale.shape:
            continue
        ratio = (size / scale).nan_to_num(float("inf"))  # an overflowed gap is the worst
        k = int(ratio.argmax())
        key = (g.layer, g.op)
        if float(ratio[k]) > tolerance and float(ratio[k]) > found.get(key, (0.0, 0.0))[1]:
            found[key] = (float(g.gap.detach()[k]), float(ratio[k]))
    worst = sorted(found.items(), key=lambda item: -item[1][1])
    parts = [f"{layer!r} ({op}) {value:+.3g} ({100 * ratio:.0f}% {of})"
             for (layer, op), (value, ratio) in worst[:most]]
    if len(worst) > most:
        parts.append(f"and {len(worst) - most} more")
    return ", ".join(parts)


class _Watch(torch.autograd.Function):
    """Plain forward and gradient of a watched call, recording its conservation gap."""

    @staticmethod
    def forward(ctx: Any, run: Callable[..., Any], record: Callable[..., None], *tensors: Tensor) -> Tensor:  # type: ignore[override]
        leaves = [t.detach().requires_grad_(t.requires_grad) for t in tensors]
        with torch.enable_grad():
            out = run(*leaves)
        ctx.graph, ctx.record = (out, leaves), record
        return out.detach()

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        out, leaves = ctx.graph
        del ctx.graph
        needed = [leaf for leaf in leaves if leaf.requires_grad]
        grads = iter(torch.autograd.grad(out, needed, grad_out, allow_unused=True) if out.requires_grad
                     else [None] * len(needed))
        grad_in = [next(grads) if leaf.requires_grad else None for leaf in leaves]
        with torch_function_disabled():
            ctx.record(grad_out, out.detach(), grad_in, [leaf.detach() for leaf in leaves])
        return (None, None, *grad_in)


def watch_call(func: Callable, args: tuple, kwargs: Mapping[str, Any], amount: Amount, layer: str,
               gaps: list[Gap]) -> Any:
    """``func(*args, **kwargs)`` with its plain gradient; its backward appends its :class:`Gap`.

    ``amount(signal, value)`` is the rule's conserved amount per sample (``None``: not measurable).
    Of a tuple result (attention's output and weights) only the first element is watched; the
    others come back detached.
    """
    slots = [(key, t) for key, t in _operands(args, kwargs) if tracked(t)]
    op = getattr(func, "__name__", str(func)).strip("_")
    extra: list[Any] = []

    def run(*tensors: Tensor) -> Tensor:
        full, kw = list(args), dict(kwargs)
        for (key, _), t in zip(slots, tensors):
            if isinstance(key, int):
                full[key] = t
            else:
                kw[key] = t
        result = func(*full, **kw)
        if isinstance(result, tuple):
            extra.extend(r.detach() if isinstance(r, Tensor) else r for r in result[1:])
            return result[0]
        return result

    def record(grad_out: Tensor, out: Tensor, grad_in: list[Tensor | None], inputs: list[Tensor]) -> None:
        total = amount(grad_out, out)
        if total is None:
            return
        for g, t in zip(grad_in, inputs):
            if g is None:
                continue
            part = amount(g, t)
            if part is None or part.shape != total.shape:
                return  # an operand the rule cannot measure (a broadcast one): no verdict
            total = total - part
        gaps.append(Gap(layer, op, total))

    out = _Watch.apply(run, record, *(t for _, t in slots))
    return (out, *extra) if extra else out
