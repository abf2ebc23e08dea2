"""Fold every BatchNorm that directly follows a convolution into that convolution (inference only).

In eval mode a ``BatchNorm2d`` is a per-channel affine map ``y = g (z - mu) / sqrt(var + eps) + b``
of the conv output ``z = W * x + c``, so the pair is one conv with weight
``W g / sqrt(var + eps)`` and bias ``(c - mu) g / sqrt(var + eps) + b``. Folding saves one full
read and write of every normalized feature map: on EfficientNet-Lite0 that is 49 of its layers.

:func:`fold_batchnorm` works on a DEEP COPY in eval mode and never touches the user's module. It
finds the pairs in ONE DRY FORWARD PASS of that private copy (:func:`record`): forward hooks on
the copy's modules and a ``torch.overrides.TorchFunctionMode`` see which tensor each conv returns
and everything that reads it. A pair is a ``Conv2d`` call whose output is read by nothing but
one ``BatchNorm2d`` call (a conv output that is also used elsewhere, e.g. by a skip, must stay
unnormalized, so it is left alone). Hooks on a private copy and a mode (torch keeps mode stacks
per thread) affect nothing outside this pass, so other threads' forwards run undisturbed; the
``torch.fx`` symbolic tracing used before patched ``nn.Module.__call__`` for the whole process.
convscope's own hooks copied with the model (:func:`~convscope.model.guard.own_hook`: the logits a
method keeps, a capture) are not recorded: what they read is convscope's, not the model's.

Subclasses, modules with hooks of their own and modules called twice are left alone, and so is a
pair that would change the output of a module in ``keep`` (a scan records the outputs of the
layers it hooks): the conv is that module, or inside it while the BN is outside. A dry pass sees
one path through the code: where a module's forward turns a tensor into a Python value
(``if x.sum() > 0``, ``.item()``), another input may take another path, so the pairs that module
wires together stay unfolded (its submodules' own pairs still fold); this is where ``torch.fx``
tracing gave up too. The folded weights replace the conv's (torch's ``fuse_conv_bn_weights``,
applied to the copy's own conv) and an ``nn.Identity`` the BN, so every dotted module name stays
valid in the copy; a hook on a folded CONV then sees the BN's output.

What happened is recorded on the copy as ``copy.fold_info`` (:class:`FoldInfo`). No warnings are
issued: an unfoldable model is still correct, only not faster. The fast path
(:mod:`convscope.model.fast`) also checks the folded copy's output against the plain copy's and
drops the fold if they differ.
"""

from __future__ import annotations

import copy
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torch.overrides import TorchFunctionMode

from .guard import exclusive, in_own_hook

DEFAULT_SIZE = (224, 224)
"""Input size of the dry pass for a bare module with no ``input_size`` (the default preprocess)."""

_METADATA = frozenset({
    "size", "dim", "numel", "nelement", "stride", "storage_offset", "element_size", "is_contiguous",
    "is_floating_point", "is_complex", "get_device", "data_ptr", "__len__", "__hash__",
    "shape", "ndim", "dtype", "device", "layout", "requires_grad", "is_cuda", "is_leaf", "grad_fn",
    "names", "_version", "is_sparse", "is_quantized", "is_meta",
})
"""Tensor functions that read shape or placement only: folding changes no answer they give."""
_CONSTANTS = frozenset({"tensor", "as_tensor"})
"""Functions whose result a graph trace records as a constant (the tracer warns about them)."""


@dataclass
class FoldInfo:
    """What :func:`fold_batchnorm` did to its copy."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    """(conv name, bn name) of every folded pair, dotted names in the copy."""
    untraced: list[str] = field(default_factory=list)
    """Modules whose forward (or a submodule's) turned a tensor into a Python value, so the dry
    pass saw only one of their paths and the pairs they wire stay unfolded ('' = root; just
    ``['']`` when the dry pass itself failed)."""

    @property
    def folded(self) -> int:
        return len(self.pairs)

    @property
    def traced(self) -> bool:
        """Whether the whole network has one data-independent path (nothing left unfolded for it)."""
        return not self.untraced


def _plain(module: nn.Module | None, kind: type) -> bool:
    """Exactly ``kind`` (a subclass may compute otherwise) with no hooks of its own (a pre-hook
    may recompute the weight, as the old ``weight_norm`` does, undoing the fold)."""
    return (type(module) is kind and not module._forward_pre_hooks  # type: ignore[union-attr]
            and not module._forward_hooks)  # type: ignore[union-attr]


def _foldable_bn(bn: nn.Module | None) -> bool:
    """An eval BN that uses running statistics (without them eval BN still normalizes per batch)."""
    return bool(_plain(bn, nn.BatchNorm2d) and bn.track_running_stats  # type: ignore[union-attr]
                and bn.running_mean is not None and bn.running_var is not None)  # type: ignore[union-attr]


def _torch_leaf(module: nn.Module) -> bool:
    """A module of torch's own (what ``torch.fx`` treats as one call): its internals wire nothing."""
    origin = type(module).__module__
    return (origin.startswith(("torch.nn", "torch.ao.nn"))
            and not isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)))


def tensors(obj: object) -> Iterator[Tensor]:
    """Every tensor in a (nested) tuple, list or dict: a model's raw output or a call's arguments."""
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from tensors(item)


def _python_value(result: object) -> bool:
    """A tensor's value as a Python number, bool or list (``torch.Size`` is shape, not value)."""
    return isinstance(result, (bool, int, float, complex, list)) and not isinstance(result, torch.Size)


def _name_of(func: Any) -> str:
    owner = getattr(func, "__self__", None)  # a property getter: Tensor.shape.__get__
    if getattr(func, "__name__", "") == "__get__" and owner is not None:
        return getattr(owner, "__name__", "")
    return getattr(func, "__name__", "")


@dataclass
class Recording:
    """What one dry pass saw; :meth:`pairs` turns it into foldable (conv, bn) names."""

    calls: Counter[str] = field(default_factory=Counter)
    fed: dict[str, list[tuple[str, tuple[str, ...]]]] = field(default_factory=dict)
    """conv name -> [(bn name, modules running when the BN was called)] for each BN fed its output."""
    produced: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """conv name -> modules running when it returned (its callers)."""
    spoiled: set[str] = field(default_factory=set)
    """Convs whose output was read by anything but one BN (or left a hooked module or the model)."""
    dependent: list[str] = field(default_factory=list)
    """Modules on the stack when a tensor became a Python value outside torch's own layers."""
    converted: bool = False
    """Whether any tensor became a Python value or a constant: a graph trace would bake it in."""
    conversion: str = ""
    """The first such conversion: the function and the module running it (why no trace)."""

    def pairs(self, modules: dict[str, nn.Module]) -> list[tuple[str, str]]:
        """(conv, bn) names whose conv output fed exactly that BN and nothing else, each called once,
        wired by a module without data-dependent control flow."""
        out = []
        for conv, uses in self.fed.items():
            if conv in self.spoiled or len(uses) != 1:
                continue
            bn, bn_stack = uses[0]
            if self.calls[conv] != 1 or self.calls[bn] != 1:
                continue
            if modules[conv].out_channels != modules[bn].num_features:  # type: ignore[union-attr]
                continue
            common = [a for a, _ in takewhile(lambda ab: ab[0] == ab[1],
                                              zip(self.produced.get(conv, ()), bn_stack))]
            wiring = common[-1] if common else ""  # the module whose code connects the two
            if wiring in self.dependent:
                continue
            out.append((conv, bn))
        return out


class _Recorder(TorchFunctionMode):
    """Hooks on a private copy plus a thread-local mode: who produced and who read each conv output."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.rec = Recording()
        self.names: dict[int, str] = {}
        self.kind: dict[int, str] = {}
        for name, m in net.named_modules():
            self.names[id(m)] = name
            self.kind[id(m)] = ("conv" if _plain(m, nn.Conv2d) else "bn" if _foldable_bn(m)
                                else "torch" if _torch_leaf(m) else "module")
        self.hooked = {id(m) for m in net.modules() if m._forward_hooks or m._forward_pre_hooks}
        self.leaf = {id(m) for m in net.modules() if next(m.children(), None) is None}
        self.stack: list[nn.Module] = []
        self.outputs: dict[int, tuple[weakref.ref[Tensor], str]] = {}
        self.handles: list[Any] = []
        self.net = net

    def attach(self) -> None:
        """Hook every module (their kinds were read above, before these hooks existed)."""
        for m in self.net.modules():
            self.handles.append(m.register_forward_pre_hook(self._enter, with_kwargs=True))
            self.handles.append(m.register_forward_hook(self._leave))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _conv_of(self, t: Tensor) -> str | None:
        entry = self.outputs.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else None

    def _stack_names(self) -> tuple[str, ...]:
        return tuple(self.names[id(m)] for m in self.stack)

    def _enter(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        name = self.names[id(module)]
        self.rec.calls[name] += 1
        if self.kind[id(module)] == "bn" and len(args) == 1 and not kwargs:  # kind "bn": no hooks
            conv = self._conv_of(args[0]) if isinstance(args[0], Tensor) else None
            if conv is not None:
                self.rec.fed.setdefault(conv, []).append((name, self._stack_names()))
        elif id(module) in self.leaf or id(module) in self.hooked:  # another layer, or a hook, reads it
            self._spoil((args, kwargs))
        self.stack.append(module)

    def _leave(self, module: nn.Module, _args: tuple, out: object) -> None:
        if self.stack and self.stack[-1] is module:
            self.stack.pop()
        if self.kind[id(module)] == "conv" and isinstance(out, Tensor):
            self.outputs[id(out)] = (weakref.ref(out), self.names[id(module)])
            self.rec.produced[self.names[id(module)]] = self._stack_names()
        elif id(module) in self.hooked:  # a hook may read it
            self._spoil(out)

    def _spoil(self, obj: object) -> None:
        for t in tensors(obj):
            conv = self._conv_of(t)
            if conv is not None:
                self.rec.spoiled.add(conv)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if in_own_hook():  # convscope's own hook reading the model's tensors, not the model
            return func(*args, **kwargs)
        top = self.kind[id(self.stack[-1])] if self.stack else "module"
        name = _name_of(func)
        if top not in ("conv", "bn") and name not in _METADATA:  # their own internals read nothing else
            self._spoil((args, kwargs))
        result = func(*args, **kwargs)
        if name in _CONSTANTS:
            self._converted(f"torch.{name} made a constant")
        elif name == "numpy" or (name not in _METADATA and _python_value(result)):
            self._converted(f"{name} turned a tensor into a Python value")
            if top != "torch":  # user code may branch on it: the paths it wires may differ
                self.rec.dependent += [n for n in self._stack_names() if n not in self.rec.dependent]
        return result


    def _converted(self, what: str) -> None:
        if not self.rec.converted:
            where = self._stack_names()
            self.rec.conversion = f"{what} in {where[-1]!r}" if where and where[-1] else \
                f"{what} in the model's forward"
        self.rec.converted = True


def record(net: nn.Module, example: Tensor) -> tuple[Any, Recording]:
    """Run ``net(example)`` once, recording conv outputs and their readers.

    ``net`` must be a private copy (hooks are added to it for the pass and removed afterwards).
    Returns the output and the :class:`Recording`; the model's own exceptions propagate.
    """
    recorder = _Recorder(net)
    try:
        recorder.attach()
        with recorder:
            out = net(example)
        recorder._spoil(out)
    finally:
        recorder.remove()
    return out, recorder.rec


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def _leaves(conv: str, bn: str, keep: set[str]) -> bool:
    """Whether the pair crosses out of a kept module: the conv's output is that module's output
    (the conv itself, or the last step of a container the BN is outside of)."""
    def within(name: str, outer: str) -> bool:
        return outer == "" or name == outer or name.startswith(outer + ".")
    return any(within(conv, k) and not within(bn, k) for k in keep)


def kept_names(net: nn.Module, keep: Iterable[nn.Module]) -> set[str]:
    """Every dotted name under which a module of ``keep`` sits in ``net``."""
    wanted = {id(m) for m in keep}
    return {name for name, m in net.named_modules(remove_duplicate=False) if id(m) in wanted}


def fold_recorded(net: nn.Module, rec: Recording | None, keep: Iterable[str] = ()) -> FoldInfo:
    """Fold, in place, the pairs ``rec`` found in ``net`` (a private copy with the recorded names).

    ``rec=None`` (the dry pass failed) folds nothing. The result is also set as ``net.fold_info``.
    """
    if rec is None:
        info = FoldInfo(untraced=[""])
    else:
        info = FoldInfo(untraced=list(rec.dependent))
        modules = dict(net.named_modules())
        seen = Counter(id(m) for m in net.modules(remove_duplicate=False))
        for conv_name, bn_name in rec.pairs(modules):
            conv, bn = modules[conv_name], modules[bn_name]
            if seen[id(conv)] > 1 or seen[id(bn)] > 1:  # one module object under two names
                continue
            if _leaves(conv_name, bn_name, set(keep)):  # a kept output would change
                continue
            with torch.no_grad():  # the conv is the copy's own: its parameters are replaced
                conv.weight, conv.bias = fuse_conv_bn_weights(
                    conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
            _set_module(net, bn_name, nn.Identity())
            info.pairs.append((conv_name, bn_name))
    net.fold_info = info  # type: ignore[assignment]
    return info


def inference_copy(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` in eval mode whose parameters share the user's storage.

    The copy's parameters are NEW ``Parameter`` objects (``requires_grad=False``) viewing the same
    memory, so converting or replacing them in the copy leaves the user's module as it was, and
    copying costs a few milliseconds instead of a full clone of the weights (deepcopy of every
    tensor took ~0.4 s on Lite0). Buffers are cloned: they are small, and no code run on the
    copy can then reach the user's running statistics. The copy is taken under the model's lock
    (:func:`~convscope.model.guard.exclusive`), so no other convscope call's hooks come along.
    """
    with exclusive(net):
        memo: dict[int, object] = {id(p): nn.Parameter(p.detach(), requires_grad=False)
                                   for p in net.parameters()}
        memo.update({id(b): b.detach().clone() for b in net.buffers()})
        out = copy.deepcopy(net, memo)
    for m in out.modules():  # flags directly: some modules refuse eval()
        m.training = False
    return out


def example_input(model: nn.Module) -> Tensor | None:
    """One seeded input row for a dry pass: the model's own input size (a convscope ``Model``), or
    :data:`DEFAULT_SIZE` with the first convolution's channels; ``None`` if nothing says."""
    size = getattr(model, "input_size", None)
    channels = getattr(model, "channels", None)
    if not (isinstance(size, tuple) and isinstance(channels, int)):
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            return None
        size, channels = DEFAULT_SIZE, first.in_channels
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    frames = getattr(model, "frames", None)  # a video model's (1, C, T, H, W) clip
    clip = (frames,) if isinstance(frames, int) else ()
    x = torch.randn(1, channels, *clip, *size, generator=torch.Generator().manual_seed(0))
    return x if param is None else x.to(param.device, param.dtype)


def fold_batchnorm(net: nn.Module, keep: Iterable[nn.Module] = (), *,
                   example: Tensor | None = None) -> nn.Module:
    """A deep copy of ``net`` in eval mode with each conv -> BN pair folded into the conv.

    The user's module is not modified. The outputs of the modules in ``keep`` (submodules of
    ``net``) stay what they are: a hook on them in the copy sees what it would see on ``net``
    (up to float rounding). ``example``: an input for the dry pass that finds the pairs
    (default :func:`example_input`); a network that cannot run on it comes back unfolded.
    ``result.fold_info`` (:class:`FoldInfo`) lists the folded pairs and what stayed unfolded.
    Parameters of the copy do not require grad: it is meant for inference.
    """
    kept = kept_names(net, keep)
    folded = inference_copy(net)
    example = example if example is not None else example_input(net)
    rec = None
    if example is not None:
        try:
            with torch.no_grad():
                _, rec = record(folded, example)
        except Exception:  # the network cannot run on this input: correct unfolded, only slower
            rec = None
    fold_recorded(folded, rec, kept)
    return folded


def fold_info(module: nn.Module) -> FoldInfo | None:
    """The :class:`FoldInfo` of a module made by :func:`fold_batchnorm` (``None`` otherwise)."""
    info = getattr(module, "fold_info", None)
    return info if isinstance(info, FoldInfo) else None
