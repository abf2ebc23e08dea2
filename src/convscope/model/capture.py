"""Record the outputs of chosen layers during a forward pass (and their gradients on demand).

``capture(model, layers)`` is the one way convscope reads activations. Hooks are registered
inside the ``with`` block and removed in ``finally`` (docs/architecture.md, convention 2), only on the layers
asked for.

In-place clobbering: a conv followed by ``ReLU(inplace=True)`` overwrites the conv's output, so a
naive hook would hand back post-activations labelled as pre-activations. By default the hook
passes a clone downstream, so the recorded tensor stays intact and gradients still flow through
it. With ``clone=False`` (no copy) the tensor's version counter is checked on every read and a
clobbered activation raises :class:`BadLayer` instead of returning wrong numbers.

Modules that run several times per forward pass (see :mod:`convscope.model.layers`): ``name:i``
records call ``i``; a bare name whose module runs a second time is refused with the list of its
calls, found during the real forward (no extra pass). ``name+relu`` records ``relu(output)``.

Maps: ``record.map(name)`` (and :func:`layer_map` for an output in hand) read a layer's output
as the (B, C, h, w) map of the image batch, through the one reader of :mod:`.tokens` (tokens,
channels-last maps and MobileViT's unfolded patches too), so every reader of a layer reads the
same axes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress

import torch
from torch import Tensor, nn

from ..errors import BadArgument, BadLayer
from .formats import check_format
from .guard import evaluating, own_hook
from .layers import (
    LayerRef,
    ambiguous_call,
    get_layer,
    known_calls,
    note_calls,
    parse_layer,
    resolve_layer,
    unwrap,
)
from .tokens import GridReshape, Layout, layout_of


class _StopForward(Exception):
    """Raised by a hook to end the forward pass once every requested layer was seen."""


class Captured:
    """Activations recorded in one ``with capture(...)`` block, indexed by layer name."""

    def __init__(self, names: Sequence[str], model: nn.Module | None = None) -> None:
        self.names = list(names)
        self._model = model
        self._acts: dict[str, Tensor] = {}
        self._versions: dict[str, int] = {}
        self._calls: dict[str, int] = {}
        """module name -> calls seen in the current forward pass"""
        self._ambiguous: set[str] = set()
        """bare names whose module ran more than once"""
        self.inputs_shape: tuple[int, ...] | None = None
        """Shape of the first tensor the network was called with in the last forward pass."""

    def _record(self, name: str, out: Tensor) -> None:
        self._acts[name] = out
        self._versions[name] = out._version

    def _refuse(self, name: str) -> BadLayer:
        module = parse_layer(name).module
        return ambiguous_call(module, self._calls.get(module, 2))

    def __contains__(self, name: object) -> bool:
        return name in self._acts

    def __getitem__(self, name: str) -> Tensor:
        if name in self._ambiguous:
            raise self._refuse(name)
        if name not in self._acts:
            if name not in self.names:
                raise BadLayer(f"layer {name!r} was not captured; captured: {', '.join(self.names)}")
            ref = parse_layer(name)
            ran = self._calls.get(ref.module, 0)
            if ref.call is not None and ran:
                raise BadLayer(f"layer {name!r} was not reached: {ref.module!r} ran {ran} time(s) "
                               "in the forward pass (calls count from 0)")
            raise BadLayer(f"layer {name!r} was not reached by the forward pass")
        out = self._acts[name]
        if out._version != self._versions[name]:
            raise BadLayer(
                f"layer {name!r}: its output was changed in place by a later operation "
                "(e.g. ReLU(inplace=True)); capture it with clone=True"
            )
        return out

    def map(self, name: str) -> Tensor:
        """Layer ``name``'s output as the (B, C, h, w) map of the images of the last forward
        ((B, C, t, h, w) of clips, :func:`layer_map`); refused in one line if it is not a map of them."""
        out = self[name]
        if self._model is None or self.inputs_shape is None or len(self.inputs_shape) not in (4, 5):
            raise BadLayer(f"layer {name!r}: maps are read for (B, C, H, W) image or (B, C, T, H, W) "
                           f"clip inputs, not {self.inputs_shape}")
        return layer_map(self._model, name, out, self.inputs_shape)

    def items(self) -> Iterator[tuple[str, Tensor]]:
        return ((n, self[n]) for n in self.names if n in self._acts or n in self._ambiguous)

    def gradients(self, outputs: Tensor, retain_graph: bool = False) -> dict[str, Tensor]:
        """d(outputs.sum())/d(activation) for every captured layer, via ``autograd.grad``.

        ``autograd.grad`` rather than ``backward`` leaves every ``param.grad`` untouched and stops
        at the captured layers: nothing below them is differentiated.
        """
        acts = dict(self.items())
        names = list(acts)
        grads = torch.autograd.grad(
            outputs.sum(), [acts[n] for n in names], retain_graph=retain_graph, allow_unused=True
        )
        return {n: (g if g is not None else torch.zeros_like(acts[n])) for n, g in zip(names, grads)}


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
    on_output: Callable[[str, Tensor], Tensor | None] | None = None,
) -> Iterator[Captured]:
    """Record the output of each named layer in the forward passes run inside the block.

    Args:
        model: a :class:`~convscope.model.wrapped.Model` or any ``nn.Module``.
        layers: dotted layer name(s) relative to the user's network; ``"auto"`` allowed; ``name:i``
            for call ``i`` of a module that runs several times, ``name+relu`` for the output after
            the model's functional ReLU. A bare name whose module runs twice is refused
            (:class:`BadLayer` listing the calls) when it is read or, at the latest, when the
            block ends.
        grads: make the recorded activations require grad (even with frozen parameters and an
            input without grad) so ``Captured.gradients`` / ``autograd.grad`` can reach them.
        clone: pass a copy downstream so later in-place ops cannot clobber the record.
        stop: end the forward pass once every requested layer was recorded by raising a private
            exception; use :func:`forward_until`, which catches it. A bare name is done after its
            first call only when a complete forward of this block's kind showed that its module
            runs once; until then the forward runs to the end, so a second call is always seen.
        on_output: instead of recording, call ``on_output(name, output)`` inside the hook. It
            reads each output before any later in-place op can change it and keeps none alive
            past its layer (a scan reduces each map to a few numbers there); nothing is
            recorded. A tensor it returns replaces the output downstream (AblationCAM's
            ablated channels); ``None`` leaves the output as it is.
    """
    if on_output is not None and grads:
        raise BadArgument("capture: on_output reads outputs in the hook; it cannot also record "
                          "them for gradients")
    names = [layers] if isinstance(layers, str) else list(layers)
    names = list(dict.fromkeys(resolve_layer(model, n) for n in names))
    net = unwrap(model)
    check_format(net, f"reading layer {names[0]!r}" if names else "reading layers", hooks=True)
    record = Captured(names, model)
    refs: dict[str, list[LayerRef]] = {}
    for name in names:
        ref = parse_layer(name)
        refs.setdefault(ref.module, []).append(ref)
    pending = set(names)
    stopped: list[bool] = []  # non-empty when the last forward was ended early

    def read(ref: LayerRef, tensor: Tensor) -> Tensor | None:
        """Record (or hand to on_output) one requested output; what to pass downstream."""
        name = ref.name
        if on_output is not None:
            return on_output(name, tensor.relu() if ref.relu else tensor)
        if grads:
            base = tensor if tensor.requires_grad else tensor.detach().requires_grad_(True)
            if ref.relu:  # downstream keeps the module's values but flows through the record
                after = base.relu()
                record._record(name, after)
                return after + (base - after).detach()
            record._record(name, base)
            return base.clone() if clone else (None if base is tensor else base)
        if ref.relu:
            record._record(name, tensor.relu())
            return None
        record._record(name, tensor)
        return tensor.clone() if clone else None

    once = {m for m in refs if known_calls(net, m) == 1}  # a complete forward showed it

    def finish(ref: LayerRef) -> None:
        if ref.call is not None or ref.module in once:
            pending.discard(ref.name)

    def make_hook(module_name: str):
        def hook(_module: nn.Module, _inputs: object, out: object) -> Tensor | None:
            index = record._calls.get(module_name, 0)
            record._calls[module_name] = index + 1
            current: Tensor | None = None
            for ref in refs[module_name]:
                if ref.call is None and index > 0:
                    record._ambiguous.add(ref.name)
                    record._acts.pop(ref.name, None)
                    continue
                if (ref.call or 0) != index:
                    continue
                down = read(ref, _output_tensor(ref.name, out if current is None else current))
                current = down if down is not None else current
                finish(ref)
            if stop and not pending:
                stopped.append(True)
                raise _StopForward
            return current

        return hook

    def new_forward(_module: nn.Module, inputs: tuple[object, ...]) -> None:
        record._calls.clear()
        stopped.clear()
        first = next((x for x in inputs if isinstance(x, Tensor)), None)
        record.inputs_shape = tuple(first.shape) if first is not None else None

    handles = []
    try:
        handles.append(net.register_forward_pre_hook(own_hook(new_forward)))
        for module_name in refs:  # own hooks: another thread's forward is not this block's
            hook = own_hook(make_hook(module_name))
            handles.append(get_layer(net, module_name).register_forward_hook(hook))
        yield record
        if record._calls and not stopped:  # the last forward ran to the end: remember its counts
            note_calls(net, {m: record._calls.get(m, 0) for m in refs})
        if record._ambiguous:
            raise record._refuse(sorted(record._ambiguous)[0])
    finally:
        for h in handles:
            h.remove()


def map_layout(model: nn.Module, name: str, shape: Sequence[int], inputs: Sequence[int], *,
               reshape: GridReshape = None) -> Layout:
    """How layer ``name``'s output of ``shape`` reads as the (B, C, h, w) map of a batch of
    image inputs of shape ``inputs`` (B, C, H, W), or of clips (B, C, T, H, W)
    (:func:`.tokens.layout_of`)."""
    return layout_of(tuple(shape), name, image=(int(inputs[-2]), int(inputs[-1])),
                     batch=int(inputs[0]), module=get_layer(model, name), root=unwrap(model),
                     reshape=reshape)


def layer_map(model: nn.Module, name: str, out: Tensor, inputs: Sequence[int], *,
              reshape: GridReshape = None) -> Tensor:
    """Layer ``name``'s output ``out`` as the (B, C, h, w) map of image inputs of shape
    ``inputs``: the one reader every map of a layer goes through."""
    return map_layout(model, name, out.shape, inputs, reshape=reshape).read(out)


def forward_until(
    model: nn.Module, inputs: Tensor, layers: str | Iterable[str], *, grads: bool = False
) -> dict[str, Tensor]:
    """Activations of ``layers`` for ``inputs``, running the network only as far as needed.

    Runs in eval mode (restored afterwards): a partial forward in train mode would still update
    batch-norm statistics. The first call for a bare layer name runs the whole forward, so a
    module that runs twice is refused as in :func:`capture`; once a complete forward showed that
    each module runs once, later calls stop right after the deepest of them.
    """
    with evaluating(model), capture(model, layers, grads=grads, stop=True) as record:
        with suppress(_StopForward):
            model(inputs)
        return dict(record.items())
