"""Record the outputs of chosen layers during a forward pass (and their gradients on demand).

``capture(model, layers)`` is the one way convscope reads activations. Hooks are registered
inside the ``with`` block and removed in ``finally`` (DESIGN.md convention 2), only on the layers
asked for.

In-place clobbering: a conv followed by ``ReLU(inplace=True)`` overwrites the conv's output, so a
naive hook would hand back post-activations labelled as pre-activations. By default the hook
passes a clone downstream, so the recorded tensor stays intact and gradients still flow through
it. With ``clone=False`` (no copy) the tensor's version counter is checked on every read and a
clobbered activation raises :class:`BadLayer` instead of returning wrong numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress

import torch
from torch import Tensor, nn

from ..errors import BadArgument, BadLayer
from .formats import check_format
from .guard import evaluating
from .layers import get_layer, resolve_layer, unwrap


class _StopForward(Exception):
    """Raised by a hook to end the forward pass once every requested layer was seen."""


class Captured:
    """Activations recorded in one ``with capture(...)`` block, indexed by layer name."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self._acts: dict[str, Tensor] = {}
        self._versions: dict[str, int] = {}

    def _record(self, name: str, out: Tensor) -> None:
        self._acts[name] = out
        self._versions[name] = out._version

    def __contains__(self, name: object) -> bool:
        return name in self._acts

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._acts:
            if name in self.names:
                raise BadLayer(f"layer {name!r} was not reached by the forward pass")
            raise BadLayer(f"layer {name!r} was not captured; captured: {', '.join(self.names)}")
        out = self._acts[name]
        if out._version != self._versions[name]:
            raise BadLayer(
                f"layer {name!r}: its output was changed in place by a later operation "
                "(e.g. ReLU(inplace=True)); capture it with clone=True"
            )
        return out

    def items(self) -> Iterator[tuple[str, Tensor]]:
        return ((n, self[n]) for n in self.names if n in self._acts)

    def gradients(self, outputs: Tensor, retain_graph: bool = False) -> dict[str, Tensor]:
        """d(outputs.sum())/d(activation) for every captured layer, via ``autograd.grad``.

        ``autograd.grad`` rather than ``backward`` leaves every ``param.grad`` untouched and stops
        at the captured layers: nothing below them is differentiated.
        """
        names = [n for n in self.names if n in self._acts]
        grads = torch.autograd.grad(
            outputs.sum(), [self[n] for n in names], retain_graph=retain_graph, allow_unused=True
        )
        return {n: (g if g is not None else torch.zeros_like(self[n])) for n, g in zip(names, grads)}


def _output_tensor(name: str, out: object) -> Tensor:
    if isinstance(out, Tensor):
        return out
    raise BadLayer(
        f"layer {name!r} returns {type(out).__name__}, not a tensor; capture one of its submodules"
    )


@contextmanager
def capture(
    model: nn.Module,
    layers: str | Iterable[str],
    *,
    grads: bool = False,
    clone: bool = True,
    stop: bool = False,
    on_output: Callable[[str, Tensor], None] | None = None,
) -> Iterator[Captured]:
    """Record the output of each named layer in the forward passes run inside the block.

    Args:
        model: a :class:`~convscope.model.wrapped.Model` or any ``nn.Module``.
        layers: dotted layer name(s) relative to the user's network; ``"auto"`` allowed.
        grads: make the recorded activations require grad (even with frozen parameters and an
            input without grad) so ``Captured.gradients`` / ``autograd.grad`` can reach them.
        clone: pass a copy downstream so later in-place ops cannot clobber the record.
        stop: end the forward pass right after the last requested layer ran by raising a private
            exception; use :func:`forward_until`, which catches it.
        on_output: instead of recording, call ``on_output(name, output)`` inside the hook. It
            reads each output before any later in-place op can change it and keeps none alive
            past its layer (a scan reduces each map to a few numbers there); nothing is
            recorded, and a layer that runs twice is reported twice.
    """
    if on_output is not None and grads:
        raise BadArgument("capture: on_output reads outputs in the hook; it cannot also record "
                          "them for gradients")
    names = [layers] if isinstance(layers, str) else list(layers)
    names = [resolve_layer(model, n) for n in names]
    net = unwrap(model)
    check_format(net, f"reading layer {names[0]!r}" if names else "reading layers", hooks=True)
    record = Captured(names)
    remaining = set(names)
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: object, out: object) -> Tensor | None:
            tensor = _output_tensor(name, out)
            if on_output is not None:
                on_output(name, tensor)
                replaced = None
            elif grads and not tensor.requires_grad:
                tensor = tensor.detach().requires_grad_(True)
                record._record(name, tensor)
                replaced = tensor.clone() if clone else tensor
            else:
                record._record(name, tensor)
                replaced = tensor.clone() if clone else None
            remaining.discard(name)
            if stop and not remaining:
                raise _StopForward
            return replaced

        return hook

    try:
        for name in dict.fromkeys(names):
            handles.append(get_layer(net, name).register_forward_hook(make_hook(name)))
        yield record
    finally:
        for h in handles:
            h.remove()


def forward_until(
    model: nn.Module, inputs: Tensor, layers: str | Iterable[str], *, grads: bool = False
) -> dict[str, Tensor]:
    """Activations of ``layers`` for ``inputs``, running the network only as far as needed.

    Runs in eval mode (restored afterwards): a partial forward in train mode would still update
    batch-norm statistics.
    """
    with evaluating(model), capture(model, layers, grads=grads, stop=True) as record:
        with suppress(_StopForward):
            model(inputs)
        return dict(record.items())
