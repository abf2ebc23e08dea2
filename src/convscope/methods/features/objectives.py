"""What feature visualization maximizes (Olah, Mordvintsev & Schubert 2017, "Feature Visualization").

An :class:`Objective` reads the activations of the layers it declares (and/or the logits) for a
batch of B images and returns one value per image, shape ``(B,)``, **higher is better**. The
optimizer hooks exactly ``objective.layers`` and runs the network to the end only when
``objective.reads_logits``; it is the one place where the sign flips (it minimizes ``-value``).

Units, for an activation ``A`` of shape (B, C, H, W):

* ``neuron(L, c, y, x)``  ``A[b, c, y, x]`` (default: the centre position)
* ``channel(L, c)``       ``mean_{y,x} A[b, c, y, x]``
* ``deepdream(L)``        ``mean A[b]^2`` (Mordvintsev et al. 2015) or ``||A[b]||_2``
* ``direction(L, v)``     ``mean_{y,x} sum_c v_c A[b, c, y, x]``: a direction in channel space
* ``logit(t)`` / ``probability(t)``  class score / softmax (or log-softmax) of class ``t``
* ``diversity(L)``        ``-mean_{j != b} cos(G_b, G_j)`` with the Gram matrix
  ``G_b = A_b A_b^T`` (C x C) of each image (Olah et al. 2017, "Diversity"): higher when the
  batch's images differ in style.

**Batched objectives**: give a sequence of units (``channel(L, [3, 7, 9])``, ``logit([1, 2])``)
and image ``b`` optimizes unit ``b``: one optimization makes one picture per unit. Such an
objective demands ``batch == len(units)``; a single unit applies to every image.

Objectives combine with ``+``, ``-``, ``*`` / ``/`` by a number and unary ``-``:
``channel(L, 3) - 0.5 * deepdream(L2)`` reads both layers. ``sum(objectives)`` works too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ...errors import BadArgument, BadLayer
from ...model.targets import select
from ...types import Target


@dataclass(frozen=True)
class Context:
    """What an objective can read for one batch of B images (all tensors share the batch)."""

    images: Tensor
    """The (B, 3, H, W) images in [0, 1] the network saw (after transforms)."""
    acts: Mapping[str, Tensor]
    """Activation (B, C, h, w) of each layer the objective declared, by the name it declared."""
    logits: Tensor | None = None
    labels: Sequence[str] | None = None

    @property
    def batch(self) -> int:
        return self.images.shape[0]

    def act(self, layer: str) -> Tensor:
        if layer not in self.acts:
            raise BadLayer(f"objective reads layer {layer!r} but it was not captured; declare it "
                           "in the objective's layers")
        return self.acts[layer]

    def need_logits(self) -> Tensor:
        if self.logits is None:
            raise BadArgument("objective reads the logits but declares reads_logits=False")
        return self.logits


class Objective:
    """Base class. Subclasses set ``layers``, ``reads_logits``, ``batch``, ``name``; implement ``value``.

    ``batch`` is the number of images the objective needs (one per unit) or ``None`` for any.
    """

    layers: tuple[str, ...] = ()
    reads_logits: bool = False
    batch: int | None = None
    name: str = "objective"

    def value(self, ctx: Context) -> Tensor:
        raise NotImplementedError

    def __call__(self, ctx: Context) -> Tensor:
        if self.batch is not None and self.batch != ctx.batch:
            raise BadArgument(f"objective {self.name} optimizes {self.batch} units, one per image, "
                              f"but the batch has {ctx.batch} images")
        # an objective sees only what it declared, so a wrong declaration fails loudly
        declared = {n: ctx.acts[n] for n in self.layers if n in ctx.acts}
        out = self.value(replace(ctx, acts=declared, logits=ctx.logits if self.reads_logits else None))
        if not isinstance(out, Tensor) or out.shape != (ctx.batch,):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise BadArgument(f"objective {self.name} must return one value per image, "
                              f"shape ({ctx.batch},), got {got}")
        return out

    def __repr__(self) -> str:
        return self.name

    # --- algebra: every combination is a weighted sum --------------------------------------
    def _terms(self) -> tuple[tuple[float, Objective], ...]:
        return ((1.0, self),)

    def __add__(self, other: object) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Sum(self._terms() + other._terms())

    def __radd__(self, other: object) -> Objective:
        if isinstance(other, (int, float)) and other == 0:  # sum([...]) starts from 0
            return self
        return NotImplemented

    def __sub__(self, other: object) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return self + (-1.0) * other

    def __mul__(self, k: object) -> Objective:
        if not isinstance(k, (int, float)) or isinstance(k, bool):
            return NotImplemented
        return Sum(tuple((w * float(k), o) for w, o in self._terms()))

    __rmul__ = __mul__

    def __truediv__(self, k: object) -> Objective:
        if not isinstance(k, (int, float)) or isinstance(k, bool) or k == 0:
            return NotImplemented
        return self * (1.0 / float(k))

    def __neg__(self) -> Objective:
        return self * -1.0


def _batch_of(parts: Sequence[Objective]) -> int | None:
    sizes = {p.batch for p in parts if p.batch is not None}
    if len(sizes) > 1:
        raise BadArgument(f"objectives optimize different numbers of units ({sorted(sizes)}); "
                          "batched terms must agree")
    return sizes.pop() if sizes else None


def _sum_name(terms: Sequence[tuple[float, Objective]]) -> str:
    """``channel(a:3) - 0.5*deepdream(b)``."""
    out = ""
    for i, (w, o) in enumerate(terms):
        mag = "" if abs(w) == 1 else f"{abs(w):g}*"
        sign = ("-" if w < 0 else "") if i == 0 else (" - " if w < 0 else " + ")
        out += f"{sign}{mag}{o.name}"
    return out


class Sum(Objective):
    """``sum_i w_i * f_i``: reads the union of the terms' layers."""

    def __init__(self, terms: Sequence[tuple[float, Objective]]) -> None:
        self.terms = tuple(terms)
        objs = [o for _, o in self.terms]
        self.layers = tuple(dict.fromkeys(layer for o in objs for layer in o.layers))
        self.reads_logits = any(o.reads_logits for o in objs)
        self.batch = _batch_of(objs)
        self.name = _sum_name(self.terms)

    def _terms(self) -> tuple[tuple[float, Objective], ...]:
        return self.terms

    def value(self, ctx: Context) -> Tensor:
        total = torch.zeros(ctx.batch, device=ctx.images.device)
        for w, o in self.terms:
            total = total + w * o(ctx)
        return total


# --- units ---------------------------------------------------------------------------------
def _units(units: int | Sequence[int], what: str) -> tuple[tuple[int, ...], int | None]:
    """(units, batch): one int applies to every image; a sequence gives one unit per image."""
    if isinstance(units, bool):
        raise BadArgument(f"{what}: a unit is a channel number, not {units}")
    if isinstance(units, (int, torch.SymInt)):
        return (int(units),), None
    values = tuple(int(u) for u in units)
    if not values:
        raise BadArgument(f"{what}: give at least one unit")
    return values, len(values)


def _channels(act: Tensor, layer: str, units: tuple[int, ...], batched: bool) -> Tensor:
    """``act[b, units[b]]`` (batched) or ``act[:, units[0]]``: (B, h, w) or (B,) for 2-D acts."""
    count = act.shape[1]
    bad = [u for u in units if not 0 <= u < count]
    if bad:
        raise BadArgument(f"channel {bad[0]} is out of range: layer {layer!r} has {count} channels")
    if not batched:
        return act[:, units[0]]
    index = torch.tensor(units, device=act.device)
    return act[torch.arange(act.shape[0], device=act.device), index]


def _label(units: tuple[int, ...]) -> str:
    return str(units[0]) if len(units) == 1 else "[" + ",".join(map(str, units)) + "]"


class Channel(Objective):
    """Mean activation of channel(s) ``channels`` of ``layer``; a sequence gives one per image."""

    def __init__(self, layer: str, channels: int | Sequence[int]) -> None:
        self.units, self.batch = _units(channels, type(self).__name__.lower())
        self.layers = (layer,)
        self.name = f"channel({layer}:{_label(self.units)})"

    def _picked(self, ctx: Context) -> Tensor:
        return _channels(ctx.act(self.layers[0]), self.layers[0], self.units, self.batch is not None)

    def value(self, ctx: Context) -> Tensor:
        picked = self._picked(ctx)
        return picked.flatten(1).mean(1) if picked.ndim > 1 else picked


class Neuron(Channel):
    """One unit: channel ``channels`` at position (y, x) of ``layer``'s map (default: the centre)."""

    def __init__(self, layer: str, channels: int | Sequence[int], y: int | None = None,
                 x: int | None = None) -> None:
        if (y is None) != (x is None):
            raise BadArgument("neuron: give both y and x, or neither for the centre")
        super().__init__(layer, channels)
        self.y, self.x = y, x
        self.name = f"neuron({layer}:{_label(self.units)}{'' if y is None else f'@{y},{x}'})"

    def value(self, ctx: Context) -> Tensor:
        picked = self._picked(ctx)
        if picked.ndim != 3:
            raise BadArgument(f"neuron: layer {self.layers[0]!r} has no spatial positions; use channel")
        h, w = picked.shape[-2:]
        y, x = (h // 2, w // 2) if self.y is None or self.x is None else (self.y, self.x)
        if not (0 <= y < h and 0 <= x < w):
            raise BadArgument(f"neuron position ({y}, {x}) is outside the {h}x{w} map of {self.layers[0]!r}")
        return picked[:, y, x]


class DeepDream(Objective):
    """The whole layer: mean of squared activations (``"square"``) or their L2 norm (``"l2"``)."""

    def __init__(self, layer: str, mode: str = "square") -> None:
        if mode not in ("square", "l2"):
            raise BadArgument(f"deepdream mode {mode!r}: use 'square' (mean of squares) or 'l2'")
        self.layers, self.mode = (layer,), mode
        self.name = f"deepdream({layer}{'' if mode == 'square' else ':l2'})"

    def value(self, ctx: Context) -> Tensor:
        flat = ctx.act(self.layers[0]).flatten(1)
        return flat.pow(2).mean(1) if self.mode == "square" else flat.norm(dim=1)


class Direction(Objective):
    """Dot product of each position's channel vector with ``vector`` ((C,) or (B, C)), averaged."""

    def __init__(self, layer: str, vector: Tensor | Sequence[float]) -> None:
        v = torch.as_tensor(vector, dtype=torch.float32).detach()
        if v.ndim not in (1, 2) or v.shape[-1] == 0:
            raise BadArgument("direction: give a (C,) vector, or (B, C) for one per image")
        self.vector, self.layers = v, (layer,)
        self.batch = v.shape[0] if v.ndim == 2 else None
        self.name = f"direction({layer}:{v.shape[-1]}d)"

    def value(self, ctx: Context) -> Tensor:
        act = ctx.act(self.layers[0])
        if act.shape[1] != self.vector.shape[-1]:
            raise BadArgument(f"direction has {self.vector.shape[-1]} values but layer "
                              f"{self.layers[0]!r} has {act.shape[1]} channels")
        v = self.vector.to(act.device, act.dtype)
        v = v.expand(act.shape[0], -1) if v.ndim == 1 else v
        return (act.flatten(2) * v[:, :, None]).sum(1).mean(1)


class Logit(Objective):
    """Class score of ``target`` (``kind``: ``"logit"``, softmax ``"prob"`` or ``"logprob"``)."""

    def __init__(self, target: Target, *, kind: str = "logit") -> None:
        if kind not in ("logit", "prob", "logprob"):
            raise BadArgument(f"class objective kind {kind!r}: use logit, prob or logprob")
        per_image = isinstance(target, Sequence) and not isinstance(target, str)
        self.target: Target = list(target) if per_image else target  # type: ignore[arg-type]
        self.batch = len(self.target) if per_image else None  # type: ignore[arg-type]
        self.kind, self.reads_logits = kind, True
        self.name = f"{kind}({self.target})"

    def value(self, ctx: Context) -> Tensor:
        logits = ctx.need_logits().flatten(1)
        if self.kind != "logit":
            logits = logits.log_softmax(1)
        score = select(logits, self.target, ctx.labels)
        return score.exp() if self.kind == "prob" else score


class Diversity(Objective):
    """Minus the mean cosine similarity of each image's Gram matrix at ``layer`` with the others'."""

    def __init__(self, layer: str) -> None:
        self.layers, self.name = (layer,), f"diversity({layer})"

    def value(self, ctx: Context) -> Tensor:
        act = ctx.act(self.layers[0])
        b = act.shape[0]
        if b < 2:
            return torch.zeros(b, device=act.device, dtype=act.dtype)
        flat = act.flatten(2)  # (B, C, hw)
        grams = torch.nn.functional.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1, eps=1e-10)
        cos = grams @ grams.T  # (B, B)
        return -(cos.sum(1) - cos.diagonal()) / (b - 1)


# --- the public vocabulary -------------------------------------------------------------------
channel, neuron, deepdream, direction, diversity = Channel, Neuron, DeepDream, Direction, Diversity


def logit(target: Target) -> Objective:
    """The class score (pre-softmax) of ``target``: an index, a label, or one per image."""
    return Logit(target)


def probability(target: Target, *, log: bool = False) -> Objective:
    """Softmax probability (or log-probability) of class ``target``."""
    return Logit(target, kind="logprob" if log else "prob")
