"""Receptive field of a unit, measured by gradient probing instead of read off an architecture.

The input pixels that can influence unit ``(c, y, x)`` of a layer are those where
``d act[c, y, x] / d input`` can be nonzero. Reading that off kernels and strides only works for
chains; probing the gradient works for residual adds, concatenations, grouped and dilated convs
and whatever else the network does. Two things would make a probed field too small, and both are
switched off for the probe (Luo et al. 2016 call the undistorted one the theoretical field):

* rectifiers whose unit is inactive pass no gradient: the probe runs under
  :data:`~convscope.model.rules.LINEAR`, i.e. through the linearized network;
* max-pooling passes gradient to one pixel per window: its backward is replaced by that of an
  average pool with the same window (forward values are unchanged).

The model runs in eval mode with frozen parameters (:func:`~convscope.model.guard.guarded`), so
batch-norm does not mix samples and each sample in a batch probes one unit. Boxes are
``(top, left, bottom, right)`` in input pixels with exclusive ``bottom``/``right``: crop with
``image[..., box.top:box.bottom, box.left:box.right]``.

:func:`field_geometry` turns two probes into the affine map ``unit -> box`` of a layer, so the box
of any position is then free (:meth:`FieldGeometry.box`); dataset scans use it to crop the patch
behind each top activation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import BadArgument, BadLayer, warn
from .capture import forward_until
from .compat import torch_function_disabled
from .guard import guarded
from .layers import resolve_layer, unwrap
from .rules import LINEAR, backward_rule

Unit = tuple[int, int] | tuple[int | None, int, int]
"""``(y, x)`` or ``(channel, y, x)``; a channel of ``None`` probes all channels at ``(y, x)``."""


@dataclass(frozen=True)
class Box:
    """A rectangle of input pixels; ``bottom`` and ``right`` are exclusive (slice bounds)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def slices(self) -> tuple[slice, slice]:
        """``image[(..., *box.slices)]`` crops a (..., H, W) tensor to the box."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


class _SpreadMaxPool(torch.autograd.Function):
    """Max-pool forward; backward of an average pool, so every pixel of a window gets gradient."""

    @staticmethod
    def forward(ctx: Any, inp: Tensor, kernel: Any, stride: Any, padding: Any,  # type: ignore[override]
                ceil_mode: bool) -> Tensor:
        ctx.save_for_backward(inp)
        ctx.args = (kernel, stride, padding, ceil_mode)
        return F.max_pool2d(inp, kernel, stride, padding, 1, ceil_mode)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None, None, None]:
        (inp,) = ctx.saved_tensors
        kernel, stride, padding, ceil_mode = ctx.args
        with torch_function_disabled(), torch.enable_grad():
            probe = inp.detach().requires_grad_(True)
            out = F.avg_pool2d(probe, kernel, stride, padding, ceil_mode, count_include_pad=True)
            (grad,) = torch.autograd.grad(out, probe, grad_out)
        return grad, None, None, None, None


def _max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
                dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """Stand-in for ``F.max_pool2d`` during a probe (dilated or index-returning pools unchanged)."""
    stride = stride if stride not in (None, [], ()) else kernel_size
    if return_indices or dilation not in (1, (1, 1), [1, 1]):
        return F.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode,  # type: ignore[call-overload]
                            return_indices)
    return _SpreadMaxPool.apply(input, kernel_size, stride, padding, ceil_mode)


_PROBE_OVERRIDES: dict[Callable[..., Any], Callable[..., Any]] = {
    F.max_pool2d: _max_pool2d, torch.max_pool2d: _max_pool2d}


def _input_spec(model: nn.Module, input_size: int | Sequence[int] | None) -> tuple[int, int, int]:
    """(channels, height, width) of the model's input."""
    if input_size is None:
        input_size = getattr(model, "input_size", (224, 224))
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or min(size) < 1:
        raise BadArgument(f"input_size={input_size!r}: give (height, width) in pixels")
    channels = getattr(model, "channels", None)
    if channels is None:
        first = next((m for m in unwrap(model).modules() if isinstance(m, nn.Conv2d)), None)
        channels = first.in_channels if first is not None else 3
    return int(channels), int(size[0]), int(size[1])


def _as_unit(unit: Unit) -> tuple[int | None, int, int]:
    if len(unit) == 2:
        return None, int(unit[0]), int(unit[1])  # type: ignore[arg-type]
    if len(unit) == 3:
        return unit[0], int(unit[1]), int(unit[2])  # type: ignore[arg-type,return-value]
    raise BadArgument(f"unit {tuple(unit)!r}: give (y, x) or (channel, y, x)")


def _seed(act: Tensor, name: str, units: Sequence[tuple[int | None, int, int]]) -> Tensor:
    """The backward signal selecting one unit per sample."""
    if act.ndim != 4:
        raise BadLayer(f"layer {name!r} has output shape {tuple(act.shape[1:])}; receptive fields "
                       "need a spatial (C, H, W) layer")
    seed = torch.zeros_like(act)
    _, c_max, h_max, w_max = act.shape
    for i, (c, y, x) in enumerate(units):
        if not (0 <= y < h_max and 0 <= x < w_max) or (c is not None and not 0 <= c < c_max):
            raise BadArgument(f"unit {(c, y, x)!r} is outside layer {name!r} of shape "
                              f"{(c_max, h_max, w_max)}")
        seed[i, slice(None) if c is None else c, y, x] = 1
    return seed


def _support_boxes(grad: Tensor) -> list[Box]:
    """Bounding box of the nonzero gradient of each sample; (B, C, H, W) -> B boxes."""
    support = grad.detach().abs().amax(1) > 0
    rows, cols = support.any(2), support.any(1)
    if not bool(rows.any(1).all()):
        raise BadArgument("a probed unit does not depend on the input pixels (no gradient reaches them)")

    def first_last(mask: Tensor) -> tuple[list[int], list[int]]:
        n = mask.shape[1]
        first = mask.int().argmax(1)
        last = n - mask.flip(1).int().argmax(1)
        return first.tolist(), last.tolist()

    (tops, bottoms), (lefts, rights) = first_last(rows), first_last(cols)
    return [Box(*b) for b in zip(tops, lefts, bottoms, rights)]


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(unwrap(model).parameters(), None)
    if param is None or not param.is_floating_point():
        return (param.device if param is not None else torch.device("cpu")), torch.float32
    return param.device, param.dtype


def _run_to(model: nn.Module, x: Tensor, name: str) -> Tensor:
    act = forward_until(model, x, name).get(name)
    if act is None:
        raise BadLayer(f"layer {name!r} was not reached by the forward pass")
    return act


def _layer_shape(model: nn.Module, name: str, spec: tuple[int, int, int]) -> tuple[int, ...]:
    device, dtype = _device_dtype(model)
    with guarded(model), torch.no_grad():
        act = _run_to(model, torch.zeros(1, *spec, device=device, dtype=dtype), name)
    return tuple(act.shape[1:])


def receptive_fields(
    model: nn.Module,
    layer: str,
    units: Sequence[Unit],
    *,
    input_size: int | Sequence[int] | None = None,
    batch_size: int = 16,
) -> list[Box]:
    """Measured receptive field (a :class:`Box`) of each unit of ``layer``, ``batch_size`` at a time.

    Args:
        model: a :class:`~convscope.model.wrapped.Model` or any ``nn.Module`` taking (B, C, H, W).
        layer: dotted layer name (``"auto"`` allowed) with a (C, H, W) output.
        units: ``(y, x)`` or ``(channel, y, x)`` positions in the layer's output.
        input_size: (H, W) of the probe input; default the model's input size (else 224x224).
    """
    name = resolve_layer(model, layer)
    if isinstance(unwrap(model), torch.jit.ScriptModule):
        warn("a TorchScript model hides its rectifiers and pools from the probe; inactive "
             "units may make the measured fields too small")
    spec = _input_spec(model, input_size)
    todo = [_as_unit(u) for u in units]
    device, dtype = _device_dtype(model)
    gen = torch.Generator().manual_seed(0)
    boxes: list[Box] = []
    with guarded(model), backward_rule(LINEAR, overrides=_PROBE_OVERRIDES):
        for start in range(0, len(todo), max(1, batch_size)):
            chunk = todo[start:start + max(1, batch_size)]
            x = torch.randn(len(chunk), *spec, generator=gen).to(device, dtype).requires_grad_(True)
            act = _run_to(model, x, name)
            seed = _seed(act, name, chunk)
            if not act.requires_grad:
                raise BadArgument(f"layer {name!r} does not depend on the input")
            (grad,) = torch.autograd.grad(act, x, seed)
            boxes.extend(_support_boxes(grad))
    return boxes


def receptive_field(
    model: nn.Module, layer: str, unit: Unit, *,
    input_size: int | Sequence[int] | None = None,
) -> Box:
    """Measured receptive field of one unit; see :func:`receptive_fields`."""
    return receptive_fields(model, layer, [unit], input_size=input_size)[0]


@dataclass(frozen=True)
class FieldGeometry:
    """The affine map from a layer position to its receptive field, per axis (height, width).

    Unit ``(y, x)`` sees rows ``[offset[0] + y * stride[0], ... + size[0])`` clipped to the input,
    and likewise for columns. ``exact`` is False when the field outgrew the largest probe input;
    then ``size`` is only a lower bound and :meth:`box` returns the whole input.
    """

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]
    input_size: tuple[int, int]
    exact: bool = True

    def box(self, y: int, x: int) -> Box:
        """The input box of the unit at layer position ``(y, x)`` (clipped to the input)."""
        h, w = self.input_size
        if not self.exact:
            return Box(0, 0, h, w)
        top, left = self.offset[0] + y * self.stride[0], self.offset[1] + x * self.stride[1]
        return Box(max(top, 0), max(left, 0), min(top + self.size[0], h), min(left + self.size[1], w))


_Axis = tuple[int, int, int]
"""(size, stride, offset) of a field along one axis."""


def _axis(first: Box, second: Box, limit: tuple[int, int], axis: int, pos: int) -> _Axis | None:
    """(size, stride, offset) along one axis from two neighbouring units, or None if clipped.

    The first unit's field must lie inside the input; the second one's start then does too.
    """
    lo = (first.top, second.top) if axis == 0 else (first.left, second.left)
    hi = (first.bottom, second.bottom) if axis == 0 else (first.right, second.right)
    if lo[0] <= 0 or hi[0] >= limit[axis]:
        return None
    stride = lo[1] - lo[0]
    return hi[0] - lo[0], stride, lo[0] - pos * stride


def field_geometry(
    model: nn.Module,
    layer: str,
    *,
    input_size: int | Sequence[int] | None = None,
    max_side: int = 1024,
) -> FieldGeometry:
    """Size, stride and offset of the receptive fields of ``layer`` for inputs of ``input_size``.

    Probes the central unit and its diagonal neighbour. When their fields touch the border the
    probe input is doubled along that axis (up to ``max_side``) so that the full, unclipped field
    is seen; this assumes, as holds for convolutions and pools with fixed padding, that the
    position -> field map does not depend on the input size, and checks it on the central unit.
    """
    name = resolve_layer(model, layer)
    channels, height, width = _input_spec(model, input_size)
    probe = [height, width]
    found: list[_Axis | None] = [None, None]
    while True:
        shape = _layer_shape(model, name, (channels, probe[0], probe[1]))
        if len(shape) != 3:
            raise BadLayer(f"layer {name!r} has output shape {shape}; receptive fields need (C, H, W)")
        cy, cx = shape[1] // 2, shape[2] // 2
        ny, nx = min(cy + 1, shape[1] - 1), min(cx + 1, shape[2] - 1)
        first, second = receptive_fields(model, name, [(cy, cx), (ny, nx)], input_size=probe)
        for axis, (pos, nxt) in enumerate(((cy, ny), (cx, nx))):
            if found[axis] is None and nxt > pos:
                found[axis] = _axis(first, second, (probe[0], probe[1]), axis, pos)
        grow = [a for a in (0, 1) if found[a] is None]
        if not grow or any(probe[a] * 2 > max_side for a in grow):
            break
        for a in grow:
            probe[a] *= 2
    if found[0] is None or found[1] is None:
        lower = (max(first.height, second.height), max(first.width, second.width))
        return FieldGeometry(lower, (0, 0), (0, 0), (height, width), exact=False)
    geometry = FieldGeometry((found[0][0], found[1][0]), (found[0][1], found[1][1]),
                             (found[0][2], found[1][2]), (height, width))
    if probe != [height, width]:
        shape = _layer_shape(model, name, (channels, height, width))
        centre = (shape[1] // 2, shape[2] // 2)
        if receptive_field(model, name, centre, input_size=(height, width)) != geometry.box(*centre):
            warn(f"layer {name!r}: receptive fields depend on the input size; boxes from "
                 "field_geometry are approximate, use receptive_fields")
    return geometry
