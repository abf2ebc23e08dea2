"""Inputs beyond one image batch: several tensors, extra forward arguments, structured outputs.

Attribution methods work on one batch tensor. A call with anything else is brought to that form
once, here, so that no method needs to know about it:

* Several input tensors, or inputs that are not (B, C, H, W) images ((B, F) tables, (B, C, L)
  signals), are PACKED: each tensor is flattened per sample and the pieces are concatenated into
  one (B, N) tensor (:class:`Packing`). Methods perturb, repeat and interpolate its rows as they
  would an image's, and their per-element attributions are unpacked into one tensor per input.
* A :class:`BoundModel` runs the user's network on such a batch: it unpacks the rows, appends the
  extra positional arguments and keyword arguments (passed UNCHANGED to every forward pass, which
  may hold more rows than the batch: a per-sample tensor belongs among the inputs), and picks
  the scores out of a tuple, dict or dataclass output (``model_output``: an index, a key or
  attribute name, or a callable). A failure inside the network becomes a :class:`BadModel`
  naming the model, the inputs and what to check.
* A callable target with no ``model_output`` sees the raw output: the bound model's output is
  then that target's scores as a (B, 1) tensor, read back by the target ``scores[:, 0]``.
* A target object (a region of a dense output, multi-label, a similarity) is bound the same way,
  always: ``select(output, target)`` on the raw output (or on what ``model_output`` picks), so
  every method explains it as it explains a callable target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import BadArgument, BadImage, BadModel, ConvscopeError
from ..types import Target
from .capture import _StopForward
from .targets import describe_output, is_target_object, pick_output, resolve_target, select
from .wrapped import Model

ModelOutput = int | str | Callable[[Any], Tensor] | None
"""Which part of a model's output holds the scores: a tuple index, a dict key or attribute
name (dataclasses, named tuples), or a callable ``output -> (B, classes)`` tensor."""


def is_image_batch(x: Tensor) -> bool:
    """A (B, C, H, W) tensor: what image-only methods (CAM family, superpixels, RISE) need."""
    return x.ndim == 4


def is_clip_batch(x: Tensor) -> bool:
    """A (B, C, T, H, W) tensor of video clips or volumes: never packed, methods see its axes."""
    return x.ndim == 5


def conv_ranks(model: nn.Module) -> set[int]:
    """The spatial ranks of the model's convolutions: {2} for an image CNN, {3} for a 3-D one."""
    ranks = set()
    for m in model.modules():
        weight = getattr(m, "weight", None)
        if type(m).__name__.startswith("Conv") and isinstance(weight, Tensor) and weight.ndim in (4, 5):
            ranks.add(weight.ndim - 2)
    return ranks


def rank_hint(model: nn.Module, inputs: Tensor) -> str | None:
    """Why a model may have failed on ``inputs`` of the wrong rank, or ``None``: a clip batch
    (B, C, T, H, W) given to a model with 2-D convolutions only, or images to a 3-D CNN."""
    ranks, name = conv_ranks(model), getattr(model, "name", type(model).__name__)
    if inputs.ndim == 5 and ranks == {2}:
        return (f"model {name!r} has 2-D convolutions only and takes (B, C, H, W) images, not the "
                f"(B, C, T, H, W) clips {tuple(inputs.shape)}: explain one frame at a time, or "
                "use a 3-D (video) model")
    if inputs.ndim == 4 and ranks == {3}:
        return (f"model {name!r} has 3-D convolutions only and takes (B, C, T, H, W) clips, not "
                f"the images {tuple(inputs.shape)}: give a video (a folder of frames or a GIF), "
                "or add the time axis (x[:, :, None] repeated over T)")
    return None


def shape_text(inputs: Sequence[Tensor]) -> str:
    return ", ".join(str(tuple(x.shape)) for x in inputs)


@dataclass(frozen=True)
class Packing:
    """How input tensors (B, *shape_i) are laid side by side in one (B, N) batch."""

    shapes: tuple[tuple[int, ...], ...]
    """Each input's shape without the batch dimension."""
    several: bool
    """Whether the user gave a tuple or list (results come back the same way)."""

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]

    def pack(self, inputs: Sequence[Tensor]) -> Tensor:
        """(B, *shape_i) tensors -> one (B, N) tensor."""
        return torch.cat([x.reshape(x.shape[0], -1) for x in inputs], 1)

    def unpack(self, flat: Tensor) -> tuple[Tensor, ...]:
        """(b, N) -> one (b, *shape_i) view per input, for any number of rows b."""
        return tuple(part.reshape(flat.shape[0], *shape)
                     for part, shape in zip(flat.split(self.sizes, 1), self.shapes))

    def map(self, flat: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """``fn`` applied to each input's part of the rows, packed again (``fn`` keeps the shape
        or returns one that broadcasts to it)."""
        parts = self.unpack(flat)
        return self.pack([fn(p).expand_as(p) for p in parts])

    def like(self, given: Tensor | Sequence[Tensor], flat: Tensor, name: str) -> Tensor:
        """A user's tensor (one input) or tensors (one per input) broadcast to the packed rows."""
        parts = [given] if isinstance(given, Tensor) else list(given)
        if len(parts) != len(self.shapes) or not all(isinstance(p, Tensor) for p in parts):
            raise BadArgument(f"{name}: give one tensor per input ({len(self.shapes)} inputs of "
                              f"shapes {', '.join(map(str, self.shapes))})")
        out = []
        for i, (p, x) in enumerate(zip(parts, self.unpack(flat))):
            try:
                out.append(p.to(x).expand_as(x))
            except RuntimeError:
                raise BadArgument(f"{name} for input {i} has shape {tuple(p.shape)}, which does not "
                                  f"broadcast to the input's {tuple(x.shape)}") from None
        return self.pack(out)

    def result(self, flat: Tensor, finish: Callable[[Tensor], Tensor]) -> Tensor | tuple[Tensor, ...]:
        """Per-element attributions (B, N) -> one tensor per input (``finish`` reduces each)."""
        parts = tuple(finish(p) for p in self.unpack(flat))
        return parts if self.several else parts[0]


def scores_column(scores: Tensor) -> Tensor:
    """The target that reads the (B, 1) scores a :class:`BoundModel` makes of a raw output."""
    return scores[:, 0]


class BoundModel(Model):
    """The user's :class:`Model` with its extra arguments, input packing and output choice bound.

    Shares the user's network (same layer names, same modules): it only changes how the network
    is called, so hooks, rules and copies made by methods work on it as on the model itself.
    """

    def __init__(self, model: Model, *, packing: Packing | None, args: Sequence[Any] = (),
                 kwargs: Mapping[str, Any] | None = None, output: ModelOutput = None,
                 raw_target: Callable[[Any], Tensor] | None = None, target_object: bool = False) -> None:
        super().__init__(model.net, preprocess=model.spec, labels=model.labels, name=model.name)
        self.training = model.training
        self.packing, self.args, self.kwargs = packing, tuple(args), dict(kwargs or {})
        self.output, self.raw_target = output, raw_target
        self.target_object = target_object
        """``raw_target`` is ``select`` of a target object (a region, a similarity, ...)."""

    @property
    def scores_only(self) -> bool:
        """The output is a callable target's (B, 1) scores, not class logits."""
        return self.raw_target is not None

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.run(self.net, x)

    def run(self, net: nn.Module, x: Tensor) -> Tensor:
        """``net`` (the user's network or a copy of it, as LRP's folded one) on packed rows."""
        inputs = self.packing.unpack(x) if self.packing is not None else (x,)
        try:
            out = net(*inputs, *self.args, **self.kwargs)
        except (ConvscopeError, _StopForward):
            raise
        except Exception as err:
            extra = f" with {len(self.args)} extra arguments" if self.args else ""
            extra += f" and keyword arguments {sorted(self.kwargs)}" if self.kwargs else ""
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise BadModel(
                f"model {self.name!r} failed on inputs of shapes {shape_text(inputs)}{extra} "
                f"({type(err).__name__}: {first}); give the inputs as a tuple in the order of its "
                "forward's arguments, the rest as additional_forward_args / forward_kwargs "
                "(passed unchanged to every forward pass, so a per-sample tensor belongs among "
                "the inputs)") from err
        if self.output is not None:
            out = pick_output(out, self.output, self.name)
        if self.raw_target is not None:
            scores = self.raw_target(out)
            if not isinstance(scores, Tensor) or scores.ndim != 1 or scores.shape[0] != x.shape[0]:
                got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
                raise BadArgument(f"the callable target must return one score per sample, shape "
                                  f"({x.shape[0]},), from the model's {describe_output(out)}; got {got}")
            return scores[:, None]
        return out


@dataclass
class Call:
    """One method call brought to a single batch tensor (see the module notes)."""

    model: Model
    """What the method runs: the user's model, or a :class:`BoundModel` sharing its network."""
    inputs: Tensor
    """The image batch itself, or the packed (B, N) inputs."""
    target: Target
    packing: Packing | None

    @property
    def plain(self) -> bool:
        return self.packing is None and not isinstance(self.model, BoundModel)


def check_inputs(inputs: object, method: str) -> tuple[list[Tensor], bool]:
    """The input tensors and whether they came as a tuple/list, or a one-line error."""
    several = isinstance(inputs, (tuple, list))
    given: list[object] = list(inputs) if several else [inputs]  # type: ignore[call-overload]
    if not given or not all(isinstance(p, Tensor) for p in given):
        got = type(inputs).__name__ if not several else ", ".join(type(p).__name__ for p in given)
        raise BadImage(f"{method}: inputs of type {got or 'empty'}: give a batch tensor (B, ...) "
                       "or a tuple of them, one per model input")
    parts = [p for p in given if isinstance(p, Tensor)]
    batch = parts[0].shape[0] if parts[0].ndim else None
    for i, p in enumerate(parts):
        name = f"input {i}" if several else "inputs"
        if p.ndim < 2:
            raise BadImage(f"{method}: {name} of shape {tuple(p.shape)} has no batch dimension: give "
                           f"(B, ...) tensors, e.g. x[None] for one sample")
        if not p.is_floating_point():
            raise BadImage(f"{method}: {name} is {p.dtype}: attributions need float inputs (embed "
                           "categorical features first, or pass them as forward arguments)")
        if p.shape[0] != batch:
            raise BadImage(f"{method}: inputs have batch sizes {', '.join(str(q.shape[0]) for q in parts)}: "
                           "every input tensor needs the same number of samples")
        if p.device != parts[0].device:
            raise BadImage(f"{method}: inputs are on devices {', '.join(str(q.device) for q in parts)}: "
                           "put them on one device")
        if not torch.isfinite(p).all():
            raise BadImage(f"{method}: {name} contains NaN or infinite values")
    return parts, several


def prepare(model: Model, inputs: Tensor | Sequence[Tensor], target: Target, *, method: str,
            additional_forward_args: Any = None, forward_kwargs: Mapping[str, Any] | None = None,
            model_output: ModelOutput = None) -> Call:
    """Check the inputs and bind what a method needs to run on one batch tensor.

    A single (B, C, H, W) tensor with nothing else stays as it is (the user's model runs it);
    a callable target without ``model_output`` costs one extra forward pass, which tells whether
    the model's output is a tensor (the target then reads it as before) or not (the target reads
    the raw output).
    """
    parts, several = check_inputs(inputs, method)
    args = _as_args(additional_forward_args)
    if forward_kwargs is not None and not isinstance(forward_kwargs, Mapping):
        raise BadArgument(f"forward_kwargs={type(forward_kwargs).__name__}: give a dict of keyword "
                          "arguments for the model's forward")
    if model_output is not None and not (callable(model_output) or isinstance(model_output, (int, str))):
        raise BadArgument(f"model_output={model_output!r}: give an index, a key or attribute name, "
                          "or a callable that picks the scores tensor from the model's output")
    packing = None
    if several or not (is_image_batch(parts[0]) or is_clip_batch(parts[0])):
        packing = Packing(tuple(tuple(p.shape[1:]) for p in parts), several)
    dtype = parts[0].dtype
    for p in parts[1:]:
        dtype = torch.promote_types(dtype, p.dtype)
    x = packing.pack([p.to(dtype) for p in parts]) if packing is not None else parts[0]
    bound_needed = packing is not None or args or forward_kwargs or model_output is not None
    raw_target = None
    chosen = is_target_object(target)
    if chosen:
        plain = BoundModel(model, packing=packing, args=args, kwargs=forward_kwargs, output=model_output)
        target = resolve_target(target, plain, x)
        raw_target, bound_needed = _selecting(target, model.labels), True
        target = scores_column
    elif callable(target) and model_output is None:
        probe = BoundModel(model, packing=packing, args=args, kwargs=forward_kwargs)
        with torch.no_grad():
            out = probe(x.detach())
        if not isinstance(out, Tensor):
            raw_target, target, bound_needed = target, scores_column, True
    if not bound_needed:
        return Call(model, x, target, None)
    bound = BoundModel(model, packing=packing, args=args, kwargs=forward_kwargs, output=model_output,
                       raw_target=raw_target, target_object=chosen)
    return Call(bound, x, target, packing)


def _selecting(target: Target, labels: Sequence[str] | None) -> Callable[[Any], Tensor]:
    def scores(out: Any) -> Tensor:
        return select(out, target, labels)
    return scores


def _as_args(args: Any) -> tuple[Any, ...]:
    if args is None:
        return ()
    return tuple(args) if isinstance(args, (tuple, list)) else (args,)


def run_net(model: Model, net: nn.Module, x: Tensor) -> Tensor:
    """``net`` (a copy of ``model.net``) called the way ``model`` calls its own network."""
    return model.run(net, x) if isinstance(model, BoundModel) else net(x)


def as_pixels(model: Model, x: Tensor) -> Tensor:
    """An image batch as [0, 1]-ish pixels for looking at it (superpixels): the inverse of the
    model's normalization when it describes the batch, else each image min-max scaled."""
    if x.shape[1] == model.channels:
        return model.denormalize(x)
    flat = x.flatten(1)
    low, high = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
    return (x - low) / (high - low).clamp_min(1e-12)


def pixel_bounds(model: Model, x: Tensor) -> tuple[Tensor, Tensor]:
    """Lowest and highest value of one input, broadcastable to it: pixels 0 and 1 normalized for
    images the preprocessing describes, else the batch's own range."""
    if is_image_batch(x) and x.shape[1] == model.channels:
        zeros = torch.zeros(1, x.shape[1], 1, 1, dtype=x.dtype, device=x.device)
        return model.normalize(zeros), model.normalize(zeros + 1)
    return x.detach().amin(), x.detach().amax()


def use_probabilities(model: Model, method: str, option: str, wanted: bool) -> bool:
    """Whether a method that may score class probabilities does: as ``wanted`` on class logits;
    never on a target object's own score (a region's logits, a cosine: there is no softmax of
    one score, the score is used as it is); refused for a callable target's raw scores."""
    if not wanted or not getattr(model, "scores_only", False):
        return wanted
    if getattr(model, "target_object", False):
        return False
    raise BadArgument(f"{method}: {option} needs the model's class logits, but a callable target "
                      "reads its raw output; pass model_output= to pick the logits, or score "
                      "logits instead")
