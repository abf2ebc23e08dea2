"""Is the rest of the network affine in a layer's output? A data-flow trace of one forward pass.

The classes a unit supports can be read from the weights above it only when everything between
the layer and the logits is affine in the layer's output (global pooling, flatten, dropout and
batch norm in eval mode, linear and conv layers, sums). :func:`affine_after` answers that from
what the forward pass really does, not from the module tree: a torch-function mode follows every
tensor computed from the layer's output and notes the first operation that is not affine in it
(a ReLU, a max-pool, a product of two such tensors...). Functional calls inside the model's own
``forward`` (``F.relu(x)``) are seen as well as modules. The mode is thread-local and popped on
exit; the hook is removed (docs/architecture.md, convention 1).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..errors import BadArgument
from .capture import capture
from .guard import guarded, own_hook
from .layers import AFTER_RELU, get_layer, parse_layer, resolve_layer

_AFFINE = frozenset([
    "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "permute", "transpose", "t",
    "contiguous", "clone", "detach", "expand", "expand_as", "narrow", "select", "__getitem__",
    "split", "chunk", "unbind", "cat", "concat", "concatenate", "stack", "to", "float", "double",
    "half", "type_as", "mean", "sum", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "add", "__add__",
    "__radd__", "__iadd__", "sub", "__sub__", "__rsub__", "__isub__", "neg", "__neg__", "__pos__",
    "pad", "__get__",
])
"""Operations affine in every tensor argument (shape moves, sums, means, linear maps)."""
_PRODUCTS = frozenset([
    "mul", "__mul__", "__rmul__", "__imul__", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm",
    "addmm", "einsum", "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
    "conv_transpose2d",
])
"""Affine when only one operand comes from the layer (``x @ W``, not ``x * x``)."""
_QUOTIENTS = frozenset([
    "div", "__truediv__", "__itruediv__", "true_divide",
])
"""Affine when the layer's data is the numerator only."""
_TRAINING_ARG = {"dropout": 2, "dropout2d": 2, "batch_norm": 5}
"""Affine when called with ``training=False`` (argument position of ``training``)."""


@dataclass(frozen=True)
class AffinePath:
    """Whether the logits are an affine function of ``layer``'s output, and why not."""

    layer: str
    affine: bool
    reason: str


def _tensors(items: Any) -> Iterator[Tensor]:
    for item in items:
        if isinstance(item, Tensor):
            yield item
        elif isinstance(item, (list, tuple)):
            yield from _tensors(item)


class _Flow(TorchFunctionMode):
    """Marks every tensor computed from the tracked ones; notes the first non-affine use."""

    def __init__(self, relu_root: bool) -> None:
        super().__init__()
        self.relu_root = relu_root
        self.root: weakref.ref | None = None
        self.marked: dict[int, weakref.ref] = {}
        self.broken: str | None = None

    def mark(self, tensor: Tensor) -> None:
        self.marked[id(tensor)] = weakref.ref(tensor)

    def reaches(self, tensor: Tensor) -> bool:
        ref = self.marked.get(id(tensor))
        return ref is not None and ref() is tensor

    def _affine(self, name: str, args: tuple, kwargs: dict, hits: list[Tensor]) -> bool:
        if name in _AFFINE:
            return True
        if name in _PRODUCTS:
            return len(hits) == 1  # x * w, not x * x
        if name in _QUOTIENTS:
            return len(hits) == 1 and len(args) > 0 and args[0] is hits[0]
        if name in _TRAINING_ARG:
            at = _TRAINING_ARG[name]
            return not kwargs.get("training", args[at] if len(args) > at else False)
        if name == "relu" and self.relu_root and self.root is not None:
            return len(hits) == 1 and hits[0] is self.root()  # the model's ReLU of `name+relu`
        return False

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        outs = list(_tensors(result if isinstance(result, (list, tuple)) else (result,)))
        hits = [t for t in _tensors((*args, *kwargs.values())) if self.reaches(t)]
        if hits and outs:  # results without tensors (sizes, flags) carry no activations on
            name = getattr(func, "__name__", repr(func))
            if self.broken is None and not self._affine(name, args, kwargs, hits):
                self.broken = name
            for out in outs:
                self.mark(out)
        return result


def affine_after(model: nn.Module, inputs: Tensor, layer: str) -> AffinePath:
    """Trace one forward pass of ``inputs`` (eval mode, no autograd) and say whether the output
    is affine in ``layer``'s output: every operation on data computed from it is affine."""
    name = resolve_layer(model, layer)
    ref = parse_layer(name)
    read = name[: -len(AFTER_RELU)] if ref.relu else name  # follow the output before the ReLU
    flow = _Flow(relu_root=ref.relu)

    def root(_name: str, tensor: Tensor) -> None:
        flow.root = weakref.ref(tensor)
        flow.mark(tensor)

    with guarded(model), torch.no_grad(), capture(model, read, on_output=root), flow:
        out = model(inputs)
    if not isinstance(out, Tensor) or not flow.reaches(out):
        return AffinePath(name, False, f"the model's output does not depend on layer {name!r}")
    if flow.broken is not None:
        return AffinePath(name, False, f"{flow.broken!r} acts non-linearly on data from {name!r} "
                                       "on the way to the logits")
    return AffinePath(name, True, f"the logits are an affine function of {name!r} (pooling, "
                                  "reshapes, linear maps only)")


def rise_response(model: nn.Module, inputs: Tensor, layer: str, channel: int) -> Tensor:
    """``f(A + 1_k) - f(A)``: the change of the output (B, ...) when every value of ``channel``
    of ``layer``'s output ``A`` rises by one. Exact when ``f`` is affine in ``A``
    (:func:`affine_after`), whatever ``A`` is; for ``name+relu`` the rise is added after the
    ReLU (``relu(x) + 1`` passes the model's own ReLU unchanged). Two forward passes, no autograd.
    """
    name = resolve_layer(model, layer)
    ref = parse_layer(name)
    module = get_layer(model, name)
    calls = [0]

    def lift(_module: nn.Module, _inputs: object, out: object) -> Tensor | None:
        index, calls[0] = calls[0], calls[0] + 1
        if index != (ref.call or 0) or not isinstance(out, Tensor):
            return None
        if out.dim() < 2 or not 0 <= channel < out.shape[1]:
            raise BadArgument(f"channel {channel}: layer {name!r} outputs shape "
                              f"{tuple(out.shape)}")
        raised = (out.relu() if ref.relu else out).clone()
        raised[:, channel] += 1.0
        return raised

    with guarded(model), torch.no_grad():
        base = model(inputs)
        handle = module.register_forward_hook(own_hook(lift))
        try:
            raised = model(inputs)
        finally:
            handle.remove()
    return raised - base
