"""Saved-model formats that are not plain modules: what each allows, and how they are loaded.

* **TorchScript** (``torch.jit.save``) runs its graph in C++, below Python. Nothing can attach a
  forward hook to it (so no method reads a layer: CAM family, Score-CAM, feature maps, masks),
  and the backward rules of :mod:`convscope.model.rules` never see its rectifiers (guided
  backprop, deconvnet, DeepLIFT and LRP would silently give plain gradients). Forward and
  backward through the whole network work: the gradient and perturbation methods run.
* **torch.export** (``torch.export.save``) programs are unflattened
  (``torch.export.unflatten``) into submodules with the original dotted names, so hooks work and
  every layer method runs. Their operations are ATen overloads, which the backward rules do not
  route either. An exported program also fixes its input shape: its height, width and channels
  become the model's input size, and a fixed batch size is met by :class:`ExportedNet`, which
  runs other batch sizes in chunks of that size.

Each loaded submodule carries ``original_name`` (TorchScript sets it; here it is set for
exported programs from the program's module stack), so layer listings show ``Conv2d`` rather than
``RecursiveScriptModule`` or ``InterpreterModule``.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.export.unflatten import UnflattenedModule

from ..errors import BadModel


@dataclass(frozen=True)
class FormatLimits:
    """What a network's format rules out."""

    format: str
    """Shown in messages: "a TorchScript model", "a torch.export program"."""
    hooks: bool
    """Forward hooks on named layers work (methods that read layers)."""
    rules: bool
    """The backward rules see its rectifiers (guided backprop, deconvnet, DeepLIFT, LRP)."""


TORCHSCRIPT = FormatLimits("a TorchScript model", hooks=False, rules=False)
EXPORTED = FormatLimits("a torch.export program", hooks=True, rules=False)


def format_limits(net: nn.Module) -> FormatLimits | None:
    """The limits of ``net``'s format, or ``None`` for an ordinary module (no limits)."""
    inner = getattr(net, "net", None)  # a convscope Model: look at the user's network
    if isinstance(inner, nn.Module) and hasattr(net, "preprocess"):
        net = inner
    if isinstance(net, torch.jit.ScriptModule):
        return TORCHSCRIPT
    if isinstance(net, UnflattenedModule):
        return EXPORTED
    return None


def check_format(net: nn.Module, what: str, *, hooks: bool = False, rules: bool = False,
                 instead: str = "") -> None:
    """Refuse ``what`` in one line when ``net``'s format cannot do what it needs.

    ``instead``: what does work (a list of method names), appended to the message.
    """
    limits = format_limits(net)
    if limits is None:
        return
    if hooks and not limits.hooks:
        why = "reads a layer through a module hook, which TorchScript does not run"
    elif rules and not limits.rules:
        why = "changes how rectifiers pass gradients back, which it cannot do on compiled operations"
    else:
        return
    hint = f"; methods that work: {instead}" if instead else ""
    raise BadModel(f"{what} {why}; the model is {limits.format}: load the nn.Module itself "
                   f"(a factory or a state dict) to use it{hint}")


def type_name(module: nn.Module) -> str:
    """The module's own class name, also for TorchScript and unflattened exported submodules."""
    return str(getattr(module, "original_name", None) or type(module).__name__)


def load_torchscript(path: Path) -> nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated")  # it works
            return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadModel(f"checkpoint {str(path)!r}: broken TorchScript file ({first})") from err


class ExportedNet(UnflattenedModule):
    """An unflattened ``torch.export`` program that accepts any batch size.

    ``batch``: the batch size fixed at export (``None`` when it was exported as dynamic). Other
    batch sizes run in chunks of ``batch`` rows (the last one padded by repeating its final
    row), so every method's batching works. While hooks are attached (a method reading a layer)
    a chunked batch would report each layer once per chunk, so that case is refused.
    """

    batch: int | None

    def __deepcopy__(self, memo: dict[int, object]) -> ExportedNet:
        """The usual deep copy (the fast path copies models), without the deprecation warnings
        torch emits while copying the program's own graph metadata (tree specs, fake tensors)."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(treespec|FakeTensor).*")
            new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    def forward(self, *args: object, **kwargs: object) -> object:
        x = args[0] if args else None
        fixed = self.batch
        if fixed is None or not isinstance(x, Tensor) or x.ndim == 0 or x.shape[0] == fixed:
            return super().forward(*args, **kwargs)
        if len(args) > 1 or kwargs:
            raise BadModel(f"this torch.export program takes batches of exactly {fixed}; pass "
                           f"{fixed} input(s) at a time")
        if any(m._forward_hooks or m._forward_pre_hooks for m in self.modules()):
            raise BadModel(f"this torch.export program takes batches of exactly {fixed}, and reading "
                           f"its layers needs one batch of that size: pass {fixed} image(s) at a "
                           "time, or export it with a dynamic batch (torch.export.Dim)")
        outs = []
        for start in range(0, x.shape[0], fixed):
            chunk = x[start:start + fixed]
            rows = chunk.shape[0]
            if rows < fixed:
                chunk = torch.cat([chunk, chunk[-1:].expand(fixed - rows, *chunk.shape[1:])])
            out = super().forward(chunk)
            if not isinstance(out, Tensor):
                raise BadModel(f"this torch.export program takes batches of exactly {fixed} and "
                               f"returns {type(out).__name__}; pass {fixed} input(s) at a time")
            outs.append(out[:rows])
        return torch.cat(outs)


@dataclass(frozen=True)
class ExportedInput:
    """The shape an exported program was exported for: ``None`` where a dimension is dynamic."""

    batch: int | None
    channels: int | None
    size: tuple[int, int] | None


def _static(dim: object) -> int | None:
    return dim if isinstance(dim, int) else None


def exported_input(program: torch.export.ExportedProgram) -> ExportedInput | None:
    """The (B, C, H, W) of the program's first user input, from its placeholder's fake tensor."""
    names = list(program.graph_signature.user_inputs)
    node = next((n for n in program.graph.nodes if n.op == "placeholder" and names
                 and n.name == names[0]), None)
    val = node.meta.get("val") if node is not None else None
    shape = getattr(val, "shape", None)
    if shape is None or len(shape) != 4:
        return None
    b, c, h, w = (_static(d) for d in shape)
    return ExportedInput(b, c, (h, w) if h is not None and w is not None else None)


def load_exported(path: Path) -> tuple[nn.Module, ExportedInput | None]:
    """An exported program as a hookable module with its original names, and its input shape."""
    try:
        program = torch.export.load(str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own pytree deprecations
            net = torch.export.unflatten(program)
    except Exception as err:  # torch raises many types for broken or foreign archives
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadModel(f"checkpoint {str(path)!r}: broken torch.export file ({first})") from err
    spec = exported_input(program)
    # unflatten() builds the module (and handles effect tokens); only batching is added on top
    net.__class__ = ExportedNet
    net.batch = spec.batch if spec is not None else None  # type: ignore[attr-defined, assignment]
    _name_types(net, program)
    return net, spec


def _name_types(net: nn.Module, program: torch.export.ExportedProgram) -> None:
    """Set ``original_name`` on each unflattened submodule from the graph's module stacks."""
    types: dict[str, str] = {}
    for node in program.graph.nodes:
        for path, kind in (node.meta.get("nn_module_stack") or {}).values():
            types.setdefault(path, str(getattr(kind, "__name__", kind)).rsplit(".", 1)[-1])
    for name, module in net.named_modules():
        if name and name in types:
            module.original_name = types[name]

