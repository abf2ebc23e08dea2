"""Fold every BatchNorm that directly follows a convolution into that convolution (inference only).

In eval mode a ``BatchNorm2d`` is a per-channel affine map ``y = g (z - mu) / sqrt(var + eps) + b``
of the conv output ``z = W * x + c``, so the pair is one conv with weight
``W g / sqrt(var + eps)`` and bias ``(c - mu) g / sqrt(var + eps) + b``. Folding saves one full
read and write of every normalized feature map: on EfficientNet-Lite0 that is 49 of its layers.

:func:`fold_batchnorm` works on a DEEP COPY in eval mode and never touches the user's module. It
finds the pairs with ``torch.fx`` symbolic tracing: a ``Conv2d`` call whose output feeds nothing
but one ``BatchNorm2d`` call (a conv output that is also used elsewhere, e.g. by a skip, must stay
unnormalized, so it is left alone). Subclasses, modules with hooks of their own and modules
called twice are left alone too, and so is a pair that would change the output of a module in
``keep`` (a scan records the outputs of the layers it hooks): the conv is that module, or inside
it while the BN is outside. The folded weights replace the conv's (torch's
``fuse_conv_bn_weights``, applied to the copy's own conv) and an ``nn.Identity`` the BN, so every
dotted module name stays valid in the copy; a hook on a folded CONV then sees the BN's output.

When the whole network cannot be traced (data-dependent control flow, a module raising during
tracing), each child module is tried in turn, recursively, so the traceable parts still fold.
What happened is recorded on the copy as ``copy.fold_info`` (:class:`FoldInfo`): the folded pairs
and the modules that could not be traced. No warnings are issued: an unfoldable model is still
correct, only not faster.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


@dataclass
class FoldInfo:
    """What :func:`fold_batchnorm` did to its copy."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    """(conv name, bn name) of every folded pair, dotted names in the copy."""
    untraced: list[str] = field(default_factory=list)
    """Modules fx could not trace whose own submodules were then tried one by one ('' = root)."""

    @property
    def folded(self) -> int:
        return len(self.pairs)

    @property
    def traced(self) -> bool:
        """Whether the whole network was traced in one piece."""
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


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def _pairs_in_graph(graph: fx.Graph, modules: dict[str, nn.Module]) -> list[tuple[str, str]]:
    """(conv, bn) names, relative to the traced module, where the conv output feeds only the bn."""
    calls: dict[str, int] = {}  # call_module targets are module names (str)
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not _foldable_bn(modules.get(str(node.target))):
            continue
        src = node.args[0] if node.args else None
        if not (isinstance(src, fx.Node) and src.op == "call_module"):
            continue
        conv_name, bn_name = str(src.target), str(node.target)
        conv = modules.get(conv_name)
        if (_plain(conv, nn.Conv2d) and len(src.users) == 1 and len(node.args) == 1 and not node.kwargs
                and calls[conv_name] == 1 and calls[bn_name] == 1
                and conv.out_channels == modules[bn_name].num_features):  # type: ignore[union-attr]
            pairs.append((conv_name, bn_name))
    return pairs


def _leaves(conv: str, bn: str, keep: set[str]) -> bool:
    """Whether the pair crosses out of a kept module: the conv's output is that module's output
    (the conv itself, or the last step of a container the BN is outside of)."""
    def within(name: str, outer: str) -> bool:
        return outer == "" or name == outer or name.startswith(outer + ".")
    return any(within(conv, k) and not within(bn, k) for k in keep)


def _fold_in(module: nn.Module, prefix: str, info: FoldInfo, shared: set[int], keep: set[str]
             ) -> None:
    """Fold the pairs of ``module`` (traced whole if possible, else child by child)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = fx.Tracer().trace(module)
    except Exception:  # any user code may raise under tracing: fall back to the children
        info.untraced.append(prefix)
        for name, child in module.named_children():
            if next(child.children(), None) is not None:
                _fold_in(child, f"{prefix}{name}.", info, shared, keep)
        return
    modules = dict(module.named_modules())
    for conv_name, bn_name in _pairs_in_graph(graph, modules):
        conv, bn = modules[conv_name], modules[bn_name]
        if id(conv) in shared or id(bn) in shared:  # one module object under two names
            continue
        if _leaves(prefix + conv_name, prefix + bn_name, keep):  # a kept output would change
            continue
        with torch.no_grad():  # the conv is the copy's own: its parameters are replaced in place
            conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean,
                                                          bn.running_var, bn.eps, bn.weight, bn.bias)
        _set_module(module, bn_name, nn.Identity())
        info.pairs.append((prefix + conv_name, prefix + bn_name))


def inference_copy(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` in eval mode whose parameters share the user's storage.

    The copy's parameters are NEW ``Parameter`` objects (``requires_grad=False``) viewing the same
    memory, so converting or replacing them in the copy leaves the user's module as it was, and
    copying costs a few milliseconds instead of a full clone of the weights (deepcopy of every
    tensor took ~0.4 s on Lite0). Buffers are cloned: they are small, and no code run on the
    copy can then reach the user's running statistics.
    """
    memo: dict[int, object] = {id(p): nn.Parameter(p.detach(), requires_grad=False)
                               for p in net.parameters()}
    memo.update({id(b): b.detach().clone() for b in net.buffers()})
    out = copy.deepcopy(net, memo)
    for m in out.modules():  # flags directly: some modules refuse eval()
        m.training = False
    return out


def fold_batchnorm(net: nn.Module, keep: Iterable[nn.Module] = ()) -> nn.Module:
    """A deep copy of ``net`` in eval mode with each conv -> BN pair folded into the conv.

    The user's module is not modified. The outputs of the modules in ``keep`` (submodules of
    ``net``) stay what they are: a hook on them in the copy sees what it would see on ``net``
    (up to float rounding). ``result.fold_info`` (:class:`FoldInfo`) lists the folded
    pairs and what could not be traced; a network fx cannot trace at all comes back unfolded.
    Parameters of the copy do not require grad: it is meant for inference.
    """
    wanted = {id(m) for m in keep}
    kept = {name for name, m in net.named_modules(remove_duplicate=False) if id(m) in wanted}
    folded = inference_copy(net)
    seen: dict[int, int] = {}
    for m in folded.modules(remove_duplicate=False):
        seen[id(m)] = seen.get(id(m), 0) + 1
    shared = {k for k, n in seen.items() if n > 1}
    info = FoldInfo()
    _fold_in(folded, "", info, shared, kept)
    folded.fold_info = info  # type: ignore[assignment]
    return folded


def fold_info(module: nn.Module) -> FoldInfo | None:
    """The :class:`FoldInfo` of a module made by :func:`fold_batchnorm` (``None`` otherwise)."""
    info = getattr(module, "fold_info", None)
    return info if isinstance(info, FoldInfo) else None
