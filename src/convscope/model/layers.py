"""Layer names: list them with types and output shapes, resolve them, pick ``"auto"``.

Names are the dotted names of ``named_modules()`` of the user's network (for a wrapped
:class:`~convscope.model.wrapped.Model`, of ``model.net``), so they match what users see in
PyTorch itself. Two suffixes name what a bare module name cannot:

* ``name:i`` is call ``i`` (from 0) of a module that runs several times per forward pass
  (ResNet's one ``relu`` per block runs twice). The bare name of such a module is ambiguous:
  every reader (capture, ``forward_until``, feature maps, masks, the scan) refuses it with a
  :class:`BadLayer` that lists the calls, instead of silently reading one of them.
* ``name+relu`` is the module's output after the ReLU that the model's own ``forward`` applies
  to it as a function (DenseNet's ``F.relu(self.features(x))``): the map the head really uses.
  Readers record ``relu(output)``; its gradient is that of the module's output, which the
  model's ReLU already zeroes where it clipped. The forward itself is not changed.

``"auto"`` is chosen from one dry forward pass that records every call of every module, in
the order the calls complete, and which function first used each output (see
:func:`choose_layer`).
"""

from __future__ import annotations

import difflib
import weakref
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..errors import BadLayer
from .device import device_of
from .formats import format_limits, type_name
from .guard import evaluating, own_hook
from .tokens import is_attention, layout_of, normalizes_last_dim

CALL = ":"
AFTER_RELU = "+relu"
_RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_)
# Layers that only resize or drop for the head: never the "auto" feature map.
_HEAD_ADAPTERS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool3d,
                  nn.AdaptiveMaxPool3d, nn.Dropout, nn.Dropout2d, nn.Dropout3d)


@dataclass(frozen=True)
class LayerInfo:
    """One named module (one row per call for a module that runs several times): its type,
    parameter count and output shape for one input (no batch)."""

    name: str
    type: str
    params: int
    output_shape: tuple[int, ...] | None
    order: int | None = None
    """Position in completion order of all calls of the dry forward pass (``None``: not run)."""
    calls: int = 1
    """How many times the module ran in the dry pass (its rows are ``name:0``, ``name:1``...)."""
    map_shape: tuple[int, int, int] | None = None
    """(C, h, w) of its output read as a map, as every reader reads it (:mod:`.tokens`: tokens
    and channels-last outputs too); ``None`` when it is not a map of the image."""

    @property
    def channels(self) -> int:
        """C as every reader counts it: of :attr:`map_shape`, else the first axis of the output
        (0: no tensor)."""
        shape = self.map_shape or self.output_shape
        return int(shape[0]) if shape else 0

    def as_dict(self) -> dict[str, object]:
        shape = list(self.output_shape) if self.output_shape is not None else None
        return {
            "name": self.name,
            "type": self.type,
            "params": self.params,
            "output_shape": shape,
            "calls": self.calls,
            "map_shape": list(self.map_shape) if self.map_shape is not None else None,
        }


@dataclass(frozen=True)
class LayerChoice:
    """The layer a method reads and why it was chosen (shown in results and summaries)."""

    name: str
    reason: str


@dataclass(frozen=True)
class LayerRef:
    """A parsed layer name: the module, which call of it, and whether the model's ReLU follows."""

    module: str
    call: int | None = None
    relu: bool = False

    @property
    def name(self) -> str:
        call = f"{CALL}{self.call}" if self.call is not None else ""
        return f"{self.module}{call}{AFTER_RELU if self.relu else ''}"


def parse_layer(name: str) -> LayerRef:
    """Split ``"module:i+relu"`` into its parts (the module itself is not looked up)."""
    base, relu = (name[: -len(AFTER_RELU)], True) if name.endswith(AFTER_RELU) else (name, False)
    module, sep, index = base.rpartition(CALL)
    if not sep:
        return LayerRef(base, None, relu)
    if not index.isdigit():
        raise BadLayer(f"layer {name!r}: after ':' give the call number (0, 1, ...) of a module "
                       "that runs several times, e.g. 'layer1.0.relu:1'")
    return LayerRef(module, int(index), relu)


def ambiguous_call(name: str, calls: int) -> BadLayer:
    """The one error for a bare name whose module ran ``calls`` > 1 times per forward pass."""
    named = ", ".join(repr(LayerRef(name, i).name) for i in range(calls))
    return BadLayer(f"layer {name!r} runs {calls} times per forward pass, so the name alone is "
                    f"ambiguous; name one call: {named}")


_KNOWN_CALLS: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[int, int]]] = (
    weakref.WeakKeyDictionary())
"""net -> {module name: (id(module), calls per forward)} seen in the last complete forward."""


def note_calls(net: nn.Module, calls: dict[str, int]) -> None:
    """Remember how often named modules ran in a complete forward pass of ``net`` (for
    ``forward_until``, which can stop right after a module known to run once)."""
    known = _KNOWN_CALLS.setdefault(net, {})
    for name, count in calls.items():
        module = _submodule(net, name)
        if module is not None:
            known[name] = (id(module), count)


def known_calls(net: nn.Module, name: str) -> int | None:
    """Calls per forward of module ``name`` seen in the last complete forward (``None``: unknown
    or the module was replaced since)."""
    entry = _KNOWN_CALLS.get(net, {}).get(name)
    if entry is None or id(get_layer(net, name)) != entry[0]:
        return None
    return entry[1]


def unwrap(model: nn.Module) -> nn.Module:
    """The user's network inside a convscope ``Model`` (or the module itself)."""
    inner = getattr(model, "net", None)
    return inner if isinstance(inner, nn.Module) and hasattr(model, "preprocess") else model


def layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in unwrap(model).named_modules() if name]


def _submodule(net: nn.Module, name: str) -> nn.Module | None:
    """The module at dotted path ``name`` (``None``: none), found in the ``_modules`` dicts: a few
    lookups instead of a walk of the whole tree, which every call of a layer method would
    otherwise pay several times. A module registered under two paths is found by either (its
    listed name is the first, as ``named_modules()`` gives it)."""
    if not name:
        return None
    module: nn.Module | None = net
    for part in name.split("."):
        children = getattr(module, "_modules", None)  # TorchScript's is a mapping without get()
        module = children[part] if children is not None and part in children else None
    return module


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The module of layer ``name`` (suffixes ``:i`` / ``+relu`` allowed); a wrong name raises
    :class:`BadLayer` with the closest names."""
    net = unwrap(model)
    module = parse_layer(name).module
    found = _submodule(net, module)
    if found is not None:
        return found
    names = [n for n, _ in net.named_modules() if n]
    close = difflib.get_close_matches(module, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run `convscope layers` to list them"
    raise BadLayer(f"layer {name!r} is not in the model; {hint}")


def _example_input(model: nn.Module) -> torch.Tensor:
    """A zero input for the dry pass: (1, C, H, W), or (1, C, T, H, W) for a video model."""
    size = getattr(model, "input_size", (224, 224))
    channels = getattr(model, "channels", 3)
    frames = getattr(model, "frames", None)
    clip = (frames,) if isinstance(frames, int) else ()
    return torch.zeros(1, channels, *clip, *size, device=device_of(unwrap(model)))


@dataclass
class _Call:
    """One call of one module in the dry pass."""

    name: str
    index: int
    module: nn.Module
    start: int
    end: int = -1
    shape: tuple[int, ...] | None = None
    first_use: Any = None
    """The torch function that first read this call's output tensor (``None``: none did)."""
    lead: int = 0
    """The output's first dimension (the image batch, unless the layer folds more into it)."""
    map_shape: tuple[int, int, int] | None = None
    """(C, h, w) of the output read as a map of the image (:func:`.tokens.layout_of`)."""
    frames: int = 0
    """t of a volume's (C, t, h, w) map (0: a map of an image)."""

    @property
    def shape_text(self) -> str:
        """The map's shape as the "auto" reason gives it: CxHxW, or Cxtxhxw for a volume."""
        c, h, w = self.map_shape or (0, 0, 0)
        return "x".join(map(str, (c, self.frames, h, w) if self.frames else (c, h, w)))

    @property
    def is_spatial(self) -> bool:
        return self.map_shape is not None and self.map_shape[1] * self.map_shape[2] > 1


@dataclass
class _Trace:
    calls: list[_Call] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    output_ndim: int | None = None
    dense: bool = False
    """The output is a dense (B, C, H, W) map, or a segmenter's dict whose ``"out"`` is one."""
    image: tuple[int, int] = (0, 0)
    """(H, W) of the example input."""


class _FirstUse(TorchFunctionMode):
    """Notes the first torch function that reads each recorded module output (this thread only:
    function modes are thread-local, so other threads' forwards are untouched)."""

    def __init__(self) -> None:
        super().__init__()
        self.owners: dict[int, tuple[weakref.ref, list[_Call]]] = {}

    def own(self, tensor: Tensor, call: _Call) -> None:
        ref, calls = self.owners.get(id(tensor), (None, []))
        if ref is None or ref() is not tensor:
            ref, calls = weakref.ref(tensor), []
        self.owners[id(tensor)] = (ref, [*calls, call])

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if isinstance(result, Tensor):
            for arg in (*args, *kwargs.values()):
                for item in arg if isinstance(arg, (list, tuple)) else (arg,):
                    entry = self.owners.get(id(item))
                    if entry is not None and entry[0]() is item:
                        for call in entry[1]:
                            if call.first_use is None:
                                call.first_use = func
        return result


def _trace(model: nn.Module, example: Tensor | None) -> _Trace:
    """One dry forward pass (eval mode, ``no_grad``, hooks removed afterwards) that records
    every call of every named module: start and completion order, output shape, first reader."""
    net = unwrap(model)
    limits = format_limits(net)
    if limits is not None and not limits.hooks:
        return _Trace()  # nothing can watch its layers run (TorchScript): names, types, parameters
    example = _example_input(model) if example is None else example
    trace, clock, mode = _Trace(), [0], _FirstUse()
    open_calls: dict[str, list[_Call]] = {}

    def tick() -> int:
        clock[0] += 1
        return clock[0]

    def make_hooks(name: str):
        def pre(module: nn.Module, _inputs: object) -> None:
            call = _Call(name, trace.counts.get(name, 0), module, tick())
            trace.counts[name] = call.index + 1
            trace.calls.append(call)
            open_calls.setdefault(name, []).append(call)

        def post(_module: nn.Module, _inputs: object, out: object) -> None:
            call = open_calls[name].pop()
            call.end = tick()
            if isinstance(out, Tensor):
                call.shape, call.lead = tuple(out.shape[1:]), int(out.shape[0]) if out.ndim else 0
                mode.own(out, call)

        return pre, post

    handles = []
    with evaluating(net):  # hooks counting this pass only: this thread's forward, under the lock
        try:
            for name, module in net.named_modules():
                if name:
                    pre, post = make_hooks(name)
                    handles.append(module.register_forward_pre_hook(own_hook(pre)))
                    handles.append(module.register_forward_hook(own_hook(post)))
            with torch.no_grad(), mode:
                out = net(example)
            trace.output_ndim = out.ndim if isinstance(out, Tensor) else None
            dense = out.get("out") if isinstance(out, dict) else out
            trace.dense = isinstance(dense, Tensor) and dense.ndim == 4
            note_calls(net, {n: trace.counts.get(n, 0) for n, _ in net.named_modules() if n})
        finally:
            for h in handles:
                h.remove()
    _read_maps(trace, net, example)
    return trace


def _read_maps(trace: _Trace, net: nn.Module, example: Tensor) -> None:
    """Each call's output read as a map of the example image (or clip), as every reader reads it."""
    if example.ndim not in (4, 5):
        return
    image, batch = (int(example.shape[-2]), int(example.shape[-1])), int(example.shape[0])
    for call in trace.calls:
        if call.shape is not None:
            with suppress(BadLayer):
                layout = layout_of((call.lead, *call.shape), call.name, image=image, batch=batch,
                                   module=call.module, root=net)
                call.map_shape, call.frames = layout.shape, layout.frames


def list_layers(model: nn.Module, example: torch.Tensor | None = None) -> list[LayerInfo]:
    """Every named module with its output shape for one example input (a dry forward pass).

    A module that runs several times gets one row per call, named ``name:0``, ``name:1``, ...
    (the names every reader accepts); modules that do not run (or return non-tensors) get
    ``output_shape=None``.
    """
    trace = _trace(model, example)
    by_name: dict[str, list[_Call]] = {}
    for call in trace.calls:
        by_name.setdefault(call.name, []).append(call)
    ends = sorted(c.end for c in trace.calls)
    rank = {end: i for i, end in enumerate(ends)}
    rows = []
    for name, module in unwrap(model).named_modules():
        if not name:
            continue
        kind, params = type_name(module), sum(p.numel() for p in module.parameters())
        calls = by_name.get(name, [])
        if not calls:
            rows.append(LayerInfo(name, kind, params, None, None, 0))
        for call in calls:
            row_name = name if len(calls) == 1 else LayerRef(name, call.index).name
            rows.append(LayerInfo(row_name, kind, params, call.shape, rank[call.end], len(calls),
                                  call.map_shape))
    return rows


def _is_conv(module: nn.Module) -> bool:
    """A convolution, also as an exported program's unflattened submodule (by its type name)."""
    return isinstance(module, nn.modules.conv._ConvNd) or type_name(module).startswith("Conv")


def _token_norm(trace: _Trace, calls: list[_Call], net: nn.Module) -> _Call | None:
    """The first token norm of the last block that holds an attention module and a module that
    normalizes the last dimension of its (map-readable) tokens, if no convolution runs after
    that block (a transformer's end, not a hybrid's attention inside convolutional stages)."""
    first_call: dict[str, _Call] = {}
    last_end: dict[str, int] = {}
    for call in calls:
        first_call.setdefault(call.name, call)
        last_end[call.name] = max(last_end.get(call.name, -1), call.end)
    blocks = [(name, block) for name, block in net.named_modules() if name in last_end
              and any(is_attention(child) for child in block.children())]
    for name, block in sorted(blocks, key=lambda item: -last_end[item[0]]):
        for child_name, child in block.named_children():
            norm = first_call.get(f"{name}.{child_name}")
            if (norm is not None and norm.map_shape is not None and norm.shape
                    and normalizes_last_dim(child, (norm.lead, *norm.shape))):
                later_convs = any(_is_conv(c.module) and c.end > last_end[name] for c in calls)
                return None if later_convs else norm
    return None


def _detector_backbone(trace: _Trace, calls: list[_Call], net: nn.Module) -> _Call | None:
    """The call of a detector's ``backbone`` child (torchvision's detectors, ``digits_detector``):
    a model that returns no tensor (a list of detections) and has one. Its heads run side by side
    (class scores, boxes), so the last map of the whole pass may be a head that a detection's
    score never reads; the backbone's last map feeds them all."""
    if trace.output_ndim is not None or trace.dense:  # a classifier or a segmenter
        return None
    if not isinstance(getattr(net, "backbone", None), nn.Module):
        return None
    return next((c for c in reversed(calls) if c.name == "backbone"), None)


def choose_layer(model: nn.Module) -> LayerChoice:
    """The ``"auto"`` layer and why: the last feature map the classifier head reads.

    Among all calls of all modules, containers included, that complete after the first
    convolution (in a detector, within its backbone: :func:`_detector_backbone`) and whose
    output reads as a map of the image (C, h, w with h*w > 1, tokens and
    channels-last maps read as :mod:`.tokens` reads them), it takes the one that completes
    last, so the outermost block wins over the layers inside it (ResNet ``layer4``: the output
    after the residual add and ReLU). Excluded are the head and what runs after it starts (the
    last module with parameters, when the model returns (B, classes): SqueezeNet's class map; or
    a dense (B, C, H, W) map, alone or as a segmenter's ``"out"``: its per-pixel classifier) and
    layers that only adapt the map for the head (adaptive pooling, dropout, flatten: VGG's
    ``avgpool``). When the model's forward applies a ReLU function to the chosen output before
    using it, the choice is ``name+relu`` (DenseNet's ``features+relu``).

    A transformer (attention blocks with token norms, no convolution after the last of them) is
    read where pytorch-grad-cam reads it: the first norm of the last attention block, whose
    tokens all still reach the class token (torchvision ViT ``encoder.layers.encoder_layer_11.ln_1``,
    timm ViT ``blocks.11.norm1``, Swin's last ``norm1``). Norms are recognized by behaviour
    (:func:`.tokens.normalizes_last_dim`), so subclasses such as timm's ``LayerNorm`` count.
    """
    trace = _trace(model, None)
    calls = sorted((c for c in trace.calls if c.end >= 0), key=lambda c: c.end)
    convs = [c for c in calls if _is_conv(c.module)]
    if not convs:
        raise BadLayer("layer 'auto' found no convolution with spatial output; name a layer")
    norm = _token_norm(trace, calls, unwrap(model))
    if norm is not None:
        name = LayerRef(norm.name, norm.index if trace.counts[norm.name] > 1 else None).name
        shape = "x".join(map(str, norm.map_shape or ()))
        return LayerChoice(name, "transformer: the first norm of the last attention block, whose "
                           f"tokens all still reach the head, read as a {shape} map")
    first_conv = convs[0].end
    leaves_with_params = [c for c in calls if not any(c.module.children())
                          and any(True for _ in c.module.parameters(recurse=False))]
    head = leaves_with_params[-1] if leaves_with_params and (trace.output_ndim == 2 or trace.dense) else None
    backbone = _detector_backbone(trace, calls, unwrap(model))
    candidates = [c for c in calls if c.is_spatial and c.end >= first_conv
                  and not isinstance(c.module, _HEAD_ADAPTERS)
                  and (head is None or c.end < head.start)
                  and (backbone is None or c.end <= backbone.end)]
    if not candidates:
        raise BadLayer("layer 'auto' found no spatial feature map after the first convolution; "
                       "name a layer (see `convscope layers`)")
    best = candidates[-1]
    relu = best.first_use in _RELU_FUNCTIONS
    name = LayerRef(best.name, best.index if trace.counts[best.name] > 1 else None, relu).name
    shape = best.shape_text
    where = (f"before the head {head.name!r}" if head is not None else
             f"of the detector's backbone {backbone.name!r}, which every head reads" if backbone is not None
             else "of the forward pass")
    reason = f"the last spatial feature map {where} ({shape})"
    if relu:
        reason += (f"; the model's forward applies a ReLU function to the output of {best.name!r},"
                   " so it is read after that ReLU, as the head uses it")
    return LayerChoice(name, reason)


def auto_layer(model: nn.Module) -> str:
    """The name of the ``"auto"`` layer (:func:`choose_layer` says why)."""
    return choose_layer(model).name


def pick_layer(model: nn.Module, name: str) -> LayerChoice:
    """Check a layer name (``"auto"`` chooses one) and say where it came from."""
    if name == "auto":
        return choose_layer(model)
    get_layer(model, name)
    return LayerChoice(parse_layer(name).name, "named by the caller")


def resolve_layer(model: nn.Module, name: str) -> str:
    """Check a layer name (``"auto"`` chooses one) and return the dotted name to use."""
    return pick_layer(model, name).name
