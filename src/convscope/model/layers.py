"""Layer names: list them with types and output shapes, resolve them, pick ``"auto"``.

Names are the dotted names of ``named_modules()`` of the user's network (for a wrapped
:class:`~convscope.model.wrapped.Model`, of ``model.net``), so they match what users see in
PyTorch itself.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import BadLayer
from .device import device_of
from .guard import evaluating


@dataclass(frozen=True)
class LayerInfo:
    """One named module: its type, parameter count and output shape for one input (no batch)."""

    name: str
    type: str
    params: int
    output_shape: tuple[int, ...] | None
    order: int | None = None
    """Position in execution order of the dry forward pass (``None``: the module did not run)."""

    def as_dict(self) -> dict[str, object]:
        shape = list(self.output_shape) if self.output_shape is not None else None
        return {
            "name": self.name,
            "type": self.type,
            "params": self.params,
            "output_shape": shape,
        }


def unwrap(model: nn.Module) -> nn.Module:
    """The user's network inside a convscope ``Model`` (or the module itself)."""
    inner = getattr(model, "net", None)
    return inner if isinstance(inner, nn.Module) and hasattr(model, "preprocess") else model


def layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in unwrap(model).named_modules() if name]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name``; a wrong name raises :class:`BadLayer` with the closest names."""
    modules = dict(unwrap(model).named_modules())
    if name in modules and name:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run `convscope layers` to list them"
    raise BadLayer(f"layer {name!r} is not in the model; {hint}")


def _example_input(model: nn.Module) -> torch.Tensor:
    size = getattr(model, "input_size", (224, 224))
    channels = getattr(model, "channels", 3)
    return torch.zeros(1, channels, *size, device=device_of(unwrap(model)))


def list_layers(model: nn.Module, example: torch.Tensor | None = None) -> list[LayerInfo]:
    """Every named module with its output shape for one example input (a dry forward pass).

    The pass runs in eval mode under ``no_grad`` with hooks removed afterwards; modules that do
    not run (or return non-tensors) get ``output_shape=None``.
    """
    net = unwrap(model)
    example = _example_input(model) if example is None else example
    shapes: dict[str, tuple[int, ...]] = {}
    order: dict[str, int] = {}
    handles = []

    def make_hook(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if isinstance(out, torch.Tensor) and name not in shapes:
                shapes[name] = tuple(out.shape[1:])
                order[name] = len(order)

        return hook

    try:
        for name, module in net.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        with evaluating(net), torch.no_grad():
            net(example)
    finally:
        for h in handles:
            h.remove()
    return [
        LayerInfo(
            name=name,
            type=type(module).__name__,
            params=sum(p.numel() for p in module.parameters()),
            output_shape=shapes.get(name),
            order=order.get(name),
        )
        for name, module in net.named_modules()
        if name
    ]


def auto_layer(model: nn.Module) -> str:
    """The last module (in execution order) with a spatial output, once a convolution has run.

    For a classifier this is the final feature map before global pooling: the activation that
    follows the last convolution, where CAM and Grad-CAM coincide. It is chosen from the modules
    that ran in a dry forward pass, so definition order does not matter.
    """
    infos = [i for i in list_layers(model) if i.order is not None]
    infos.sort(key=lambda i: i.order)  # type: ignore[arg-type, return-value]
    leaf = {n for n, m in unwrap(model).named_modules() if n and not any(m.children())}
    spatial = [
        i
        for i in infos
        if i.name in leaf
        and i.output_shape is not None
        and len(i.output_shape) == 3
        and i.output_shape[1] * i.output_shape[2] > 1
    ]
    convs = [i for i in spatial if i.type.startswith("Conv")]
    if not convs:
        raise BadLayer("layer 'auto' found no convolution with spatial output; name a layer")
    return spatial[-1].name


def resolve_layer(model: nn.Module, name: str) -> str:
    """Check a layer name (``"auto"`` chooses one) and return the dotted name to use."""
    if name == "auto":
        return auto_layer(model)
    get_layer(model, name)
    return name
