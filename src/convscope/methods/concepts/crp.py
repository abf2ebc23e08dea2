"""Concept relevance propagation: the LRP relevance that flows through chosen channels of a layer.

Achtibat, Dreyer, Eisenbraun, Bosse, Wiegand, Samek & Lapuschkin 2023, "From attribution maps to
human-understandable explanations through Concept Relevance Propagation" (Nature Machine
Intelligence). LRP (:mod:`convscope.methods.attribution.lrp`) sends the target logit backwards as
relevance ``R``; CRP conditions it on a concept ``theta`` = a set of channels ``c`` of layer ``l``
by masking the relevance there (Eq. 6-7)::

    R^(l)(x | theta) = R^(l)(x) * 1[channel in theta]     (B, C, h, w)
    R^(1)(x | theta) = LRP from layer l down to the input of that masked relevance   (B, C_in, H, W)

and a channel's relevance for the decision is its share of the layer's relevance,
``R_c = sum_{h, w} R^(l)_c`` (Eq. 8; relative values are R_c / sum |R|). As in zennit-crp with
``exclude_parallel=True``, the conditional heatmap is the relevance that passes *through* the
layer: a skip connection around it carries none. Every rule is linear in the relevance it is
given (its denominators come from the forward pass), so the heatmaps of all channels of a layer
that every path crosses add up to the LRP map, and each heatmap sums to its channels' relevance
where the rules conserve (no biases; epsilon, z+, gamma, z^B).

Cost (docs/architecture.md, convention 10): one LRP forward and a backward to the layer give
every channel's relevance (and the top channels of each image); then the K conditions run as one
forward of the batch repeated K times *up to the layer only* and one backward from there (zennit-
crp's batching of conditions, without repeating the layers above), in chunks of ``batch_size``
rows. K conditional heatmaps cost less than K LRP passes.

Shapes: inputs (B, C_in, H, W); layer output (B, C, ...) read as channels by the one layer reader
(:func:`convscope.model.capture.map_layout`: maps, channels-last, tokens) or (B, C) for a dense
layer; heatmaps (B, K, C_in, H, W).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import BadArgument, BadLayer, ConvscopeError
from ...model import Model, capture, forward_until
from ...model.capture import map_layout
from ...model.structured import run_net
from ...model.tokens import Layout
from ...types import Target
from ..attribution.base import method_failed
from ..attribution.lrp import LRP, CompositeName, LayerRule, RuleName

Conditions = Sequence[int | Sequence[int]]
"""Channels to condition on: each entry is one condition, a channel or a group of channels."""


@dataclass
class ConceptMaps:
    """Conditional heatmaps of a batch and every channel's relevance at the layer."""

    heatmaps: Tensor
    """(B, K, C_in, H, W) input relevance of each of the K conditions, signed."""
    conditions: list[list[tuple[int, ...]]]
    """Per image, the channels of each condition (the top channels of that image for ``top=``)."""
    relevance: Tensor
    """(B, C) each channel's relevance for the target: the layer's relevance summed per channel."""
    layer_maps: Tensor
    """(B, C, ...) the relevance at the layer, in the layer's own layout."""
    scores: Tensor
    """(B,) the relevance at the output (the target logit): what LRP distributes."""


class _Channels:
    """A layer output's channel axis: per-channel sums and per-channel masks in its own layout."""

    def __init__(self, net: nn.Module, name: str, shape: Sequence[int], inputs: Sequence[int]) -> None:
        self.layout: Layout | None = None
        if len(shape) == 2:  # a dense layer: (B, C)
            self.count = int(shape[1])
            return
        self.layout = map_layout(net, name, shape, inputs)
        self.count = self.layout.channels

    def totals(self, values: Tensor) -> Tensor:
        """(B, C): ``values`` in the layer's layout summed over positions."""
        return values if self.layout is None else self.layout.read(values).sum((2, 3))

    def spread(self, per_channel: Tensor) -> Tensor:
        """(B, C) values shaped to broadcast against the layer's output."""
        return per_channel if self.layout is None else self.layout.per_channel(per_channel)


class CRP(LRP):
    """Concept relevance propagation (Achtibat et al. 2023) on a layer, with LRP's composites.

    ``layer`` is the layer whose channels are concepts; the LRP options (``composite``,
    ``rules``, ``epsilon``, ...) are :class:`~convscope.methods.attribution.lrp.LRP`'s;
    ``batch_size`` bounds the rows (image x condition) of one conditional pass.
    """

    method_name = "crp"
    needs_hooks = True
    images_only = True

    def __init__(self, model: Model, *, layer: str = "auto", batch_size: int = 64,
                 composite: CompositeName = "epsilon_gamma_box",
                 rules: Mapping[str, LayerRule | RuleName] | None = None, **numbers: float) -> None:
        super().__init__(model, composite=composite, rules=rules, **numbers)  # type: ignore[arg-type]
        choice = self._resolve_layer(model, layer)
        self.layer, self.layer_reason = choice.name, choice.reason
        if not isinstance(batch_size, int) or batch_size < 1:
            raise BadArgument(f"batch_size={batch_size!r}: give a whole number >= 1")
        self.batch_size = batch_size

    def conditional(self, inputs: Tensor, target: Target = "top1", *, channels: Conditions | None = None,
                    top: int | None = None) -> ConceptMaps:
        """Heatmaps conditioned on ``channels`` (the same conditions for every image) or on each
        image's ``top`` channels by relevance, and every channel's relevance."""
        if (channels is None) == (top is None):
            raise BadArgument("crp: give channels=[...] (channels or groups of channels) or top=K, "
                              "one of the two")
        self.logits = None
        with self.running(inputs, target) as call:
            try:
                return self._conditional(call.inputs.detach(), call.target, channels, top)
            except ConvscopeError:
                raise
            except Exception as err:
                raise method_failed(self.method_name, self.model, err, self.layer, call.inputs) from err

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        """The LRP map of the relevance through the whole layer, (B, C_in, H, W)."""
        return self._layer_pass(self.folded(inputs), inputs, target, through=True)[3]

    def _layer_pass(self, net: nn.Module, inputs: Tensor, target: Target,
                    through: bool = False) -> tuple[Tensor, Tensor, _Channels, Tensor]:
        """One LRP pass to the layer: its relevance, the score, its channels, and (``through``)
        the input relevance of all of it."""
        assert self.layer is not None
        found = relevance_at(self, net, inputs, target, [self.layer], through=through)
        rel, channels = found.relevance[self.layer], found.channels[self.layer]
        through_map = found.through if found.through is not None else torch.zeros_like(inputs)
        return rel, found.scores, channels, through_map

    def _conditional(self, inputs: Tensor, target: Target, channels: Conditions | None,
                     top: int | None) -> ConceptMaps:
        net = self.folded(inputs)
        rel, scores, view, _ = self._layer_pass(net, inputs, target)
        totals = view.totals(rel)
        groups = conditions_for(totals, view.count, self.layer or "", channels, top)
        masks = torch.zeros(len(inputs), len(groups[0]), view.count, dtype=rel.dtype, device=rel.device)
        for b, row in enumerate(groups):
            for k, group in enumerate(row):
                masks[b, k, list(group)] = 1
        heat = self._through(net, inputs, rel, masks)
        return ConceptMaps(heatmaps=heat, conditions=groups, relevance=totals.detach(),
                           layer_maps=rel.detach(), scores=scores.detach())

    def _through(self, net: nn.Module, inputs: Tensor, rel: Tensor, masks: Tensor) -> Tensor:
        """(B, K, C_in, H, W): the input relevance of ``rel`` masked by each of ``masks`` (B, K, C),
        from a forward of the repeated batch that stops at the layer, in chunks of rows."""
        name = self.layer
        assert name is not None
        batch, k = masks.shape[:2]
        flat = masks.reshape(batch * k, -1)
        heat = torch.empty(batch * k, *inputs.shape[1:], dtype=inputs.dtype, device=inputs.device)
        for first in range(0, batch * k, self.batch_size):
            rows = torch.arange(first, min(batch * k, first + self.batch_size), device=inputs.device)
            x = inputs[rows // k].detach().requires_grad_(True)
            with torch.enable_grad():
                with self.propagating(net, x, whole=False):
                    act = forward_until(net, x, name, grads=True)[name]
                view = _Channels(net, name, act.shape, x.shape)
                (part,) = torch.autograd.grad(act, x, rel[rows // k] * view.spread(flat[rows]))
            heat[rows] = part
        return heat.view(batch, k, *inputs.shape[1:])


def conditions_for(totals: Tensor, count: int, layer: str, channels: Conditions | None,
                   top: int | None) -> list[list[tuple[int, ...]]]:
    """Per image, the channel groups to condition on: ``channels`` checked against ``count``, or
    each image's ``top`` channels by relevance ``totals`` (B, C), most relevant first."""
    batch = totals.shape[0]
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise BadArgument(f"top={top!r}: give a whole number of channels >= 1")
        order = totals.argsort(1, descending=True)[:, :min(top, count)]
        return [[(int(c),) for c in row] for row in order]
    assert channels is not None
    if isinstance(channels, (int, str)) or not len(channels):
        raise BadArgument(f"channels={channels!r}: give a list of channels (or groups of channels), "
                          "e.g. [3, 7] or [[3, 7], [12]]")
    groups: list[tuple[int, ...]] = []
    for entry in channels:
        group = (entry,) if isinstance(entry, int) else tuple(entry)
        for c in group:
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < count:
                raise BadArgument(f"channel {c!r} is out of range: layer {layer!r} has {count} channels "
                                  f"(0-{count - 1})")
        if not group:
            raise BadArgument("channels: an empty group conditions on nothing; drop it")
        groups.append(group)
    return [list(groups) for _ in range(batch)]


@dataclass
class LayerRelevance:
    """The relevance at some layers after one LRP pass (:func:`relevance_at`)."""

    relevance: dict[str, Tensor]
    """layer -> (B, C, ...) relevance in the layer's own layout."""
    channels: dict[str, _Channels]
    scores: Tensor
    """(B,) the relevance at the output: the target logits."""
    through: Tensor | None
    """(B, C_in, H, W) the input relevance (when asked for): the LRP map."""


def relevance_at(method: LRP, net: nn.Module, inputs: Tensor, target: Target, layers: Sequence[str],
                 through: bool = False) -> LayerRelevance:
    """One LRP forward of ``net`` (``method``'s folded copy) and one backward to ``layers``
    (and the input, ``through``): the relevance each layer receives from the target."""
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        with capture(net, layers, grads=True) as record, method.propagating(net, x) as (block, prop):
            logits = run_net(method.model, net, x)
        acts = [record[name] for name in layers]
        method.logits = logits.detach()
        for name, act in zip(layers, acts):
            if act.grad_fn is None:
                raise BadLayer(f"CRP: layer {name!r} does not depend on the input, so LRP relevance "
                               "cannot reach the input through it; name a layer between the input and "
                               "the output (see `convscope layers`)")
        start = method.start(logits, target)
        found = torch.autograd.grad(logits, [*acts, x] if through else acts, start, allow_unused=True)
    for name, rel in zip(layers, found):
        if rel is None:
            raise BadLayer(f"CRP: the model's output does not depend on layer {name!r}, so no relevance "
                           "reaches it; name a layer on the path from the input to the output")
    scores = start.flatten(1).sum(1)
    method._report(block.gaps, prop.swallowed, scores)
    return LayerRelevance(
        relevance={name: rel for name, rel in zip(layers, found)},  # type: ignore[misc]
        channels={name: _Channels(net, name, act.shape, x.shape) for name, act in zip(layers, acts)},
        scores=scores, through=found[-1] if through else None)
