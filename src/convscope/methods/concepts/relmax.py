"""Relevance maximization: a dataset's top images for a channel by relevance, not activation.

Achtibat et al. 2023 ("From attribution maps to human-understandable explanations through
Concept Relevance Propagation", Nature Machine Intelligence, Sec. 4.2, Eq. 11-13): activation
maximization shows what makes a channel fire; RelMax shows how the model *uses* the channel,
ranking the images by the channel's relevance for a decision,
``R_c(x) = sum_{h, w} R^(l)_c(x | y)`` (Eq. 8 summed, :mod:`.crp`), where ``y`` is the image's
predicted class (or one class given for the whole scan). The patch of an exemplar is centred on
the position of the largest relevance in the channel's map, as activation exemplars are on the
largest activation, so the atlas's receptive-field machinery crops both the same way.

Streaming and exact: each batch costs one LRP forward and one backward to the layers, and merges
into the same (C, k) top-k state as activation exemplars (:class:`~..dataset.topk.TopK`), kept
by the scan under ``layer + RELEVANCE_RECORDS`` (resumable and torchrun-sharded with the rest).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ...model import Model, guarded
from ...model.tokens import Layout
from ...types import RELEVANCE_RECORDS
from ..attribution.lrp import LRP, CompositeName
from ..dataset.topk import TopK
from .crp import relevance_at


class RelevanceExemplars:
    """Feeds each batch's per-channel relevances of ``layers`` into top-k states.

    ``target``: the class whose relevance ranks the images (``None``: each image's prediction).
    """

    def __init__(self, model: Model, layers: Sequence[str], *, target: int | None = None,
                 composite: CompositeName = "epsilon_plus") -> None:
        self.method = LRP(model, composite=composite)
        self.layers = list(layers)
        self.target = target

    def step(self, inputs: Tensor, indices: Tensor, predictions: Tensor, topk: dict[str, TopK],
             k: int) -> None:
        """Merge one batch into ``topk`` (keys ``layer + RELEVANCE_RECORDS``)."""
        target: int | Tensor = predictions if self.target is None else self.target
        with guarded(self.method.model):
            net = self.method.folded(inputs)
            found = relevance_at(self.method, net, inputs, target, self.layers)
        for name in self.layers:
            totals, locate, width = channel_relevance(found.relevance[name].detach().float(),
                                                      found.channels[name].layout)
            key = name + RELEVANCE_RECORDS
            state = topk.get(key) or TopK.empty(totals.shape[1], k, totals.device)
            topk[key] = state.update(totals, locate, indices.to(totals.device), width)


def channel_relevance(rel: Tensor, layout: Layout | None) -> tuple[Tensor, Tensor, int]:
    """(B, C) relevance per channel, (B, C) flat position of each channel's largest relevance in
    its (h, w) map, and the map's width; a dense layer's (B, C) is its own total at position 0."""
    if rel.ndim == 2 or layout is None:
        return rel, torch.zeros_like(rel, dtype=torch.long), 1
    grid = layout.read(rel)
    return grid.sum((2, 3)), grid.flatten(2).argmax(2), grid.shape[3]
