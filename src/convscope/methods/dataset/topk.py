"""Exact streaming top-k per channel, with a total order so every merge gives the same answer.

A dataset scan keeps, for every channel of a layer, the k images with the largest maximum
activation over space, together with the argmax position. Candidates arrive batch by batch (and,
under ``torchrun``, from several processes), so the running state is merged with each new set of
candidates. For the result to be *exactly* reproducible -- the same whatever the batch size, the
number of processes, or a kill and resume in between -- candidates are ranked by a total order:

    value descending, then image index ascending (ties go to the lower index).

Each merge sorts the union of candidates by index (stable), then by value descending (stable),
and keeps the first k: the top-k of a union equals the top-k of the union of top-ks under a total
order, so merging partial results in any grouping is exact. NaN activations rank as ``-inf``.

Shapes: state ``values`` (C, k) float32, ``indices``/``ys``/``xs`` (C, k) int64. Unfilled slots
hold ``-inf`` and index :data:`EMPTY` (they sort last and are dropped by :meth:`TopK.records`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

EMPTY = torch.iinfo(torch.int64).max
"""Index of an unfilled slot (sorts after every real image index)."""
Locate = Callable[[Tensor, Tensor], Tensor]
"""``(batch rows (n,), channels (n,)) -> (n,)`` flat argmax positions of those maps."""


@dataclass
class TopK:
    """The best ``k`` (image, position) pairs of each of ``C`` channels, best first."""

    values: Tensor
    indices: Tensor
    ys: Tensor
    xs: Tensor

    @classmethod
    def empty(cls, channels: int, k: int, device: torch.device | str = "cpu") -> TopK:
        values = torch.full((channels, k), float("-inf"), device=device)
        indices = torch.full((channels, k), EMPTY, dtype=torch.long, device=device)
        zeros = torch.zeros((channels, k), dtype=torch.long, device=device)
        return cls(values, indices, zeros, zeros.clone())

    @property
    def k(self) -> int:
        return self.values.shape[1]

    @property
    def channels(self) -> int:
        return self.values.shape[0]

    def merge(self, values: Tensor, indices: Tensor, ys: Tensor, xs: Tensor) -> TopK:
        """A new state: the top-k of this state and candidates (C, n) (all four the same shape)."""
        return _select(torch.cat([self.values, values.to(self.values)], 1),
                       torch.cat([self.indices, indices.to(self.indices)], 1),
                       torch.cat([self.ys, ys.to(self.ys)], 1),
                       torch.cat([self.xs, xs.to(self.xs)], 1), self.k)

    def update(self, maxima: Tensor, positions: Tensor | Locate, indices: Tensor, width: int) -> TopK:
        """Merge one batch: ``maxima`` (B, C) spatial maxima, ``indices`` (B,) the images' dataset
        indices, ``positions`` the flat argmax over a map ``width`` wide: a (B, C) tensor, or a
        function ``(rows, channels) -> flat argmax`` asked only for the few (image, channel)
        pairs that enter the top-k (an argmax over a whole batch costs more than the max).
        """
        b, c = maxima.shape
        values = maxima.t().float()
        values = values.masked_fill(torch.isnan(values), float("-inf"))
        idx = indices.to(self.indices).view(1, -1).expand(c, -1)
        rows = torch.arange(b, device=self.ys.device).view(1, -1).expand(c, -1)
        values, idx, rows = self._contenders(values, idx, rows)
        if values.shape[1] == 0:
            return self
        if isinstance(positions, Tensor):
            pos = positions.long().t().to(self.ys).gather(1, rows)
            return self.merge(values, idx, pos // width, pos % width)
        marks = -1 - rows  # < 0: "position not computed yet"
        merged = self.merge(values, idx, marks, torch.zeros_like(marks))
        new = merged.ys < 0
        if new.any():
            channel = torch.arange(c, device=new.device).view(-1, 1).expand_as(new)[new]
            flat = positions(-1 - merged.ys[new], channel).long().to(merged.ys)
            merged.ys[new], merged.xs[new] = flat // width, flat % width
        return merged

    def _contenders(self, values: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
        """The candidates (C, n) that can still enter, cut to (C, m), with ``others`` alike.

        A candidate below a channel's current k-th value can never enter (ties may: the lower
        index wins), so each channel keeps its ``m`` best, ``m`` being the most candidates any
        channel has at or above its k-th value. Once the state is full that is usually a
        handful, and the exact merge sorts k + m instead of k + n columns (the sort dominated).
        """
        passing = values >= self.values[:, -1:]  # -inf while a channel is not full: all pass
        m = int(passing.sum(1).max()) if passing.numel() else 0
        if m == values.shape[1]:
            return (values, *others)
        keep = values.topk(m, dim=1, sorted=False).indices  # all the passing ones, and fillers
        return (values.gather(1, keep), *(o.gather(1, keep) for o in others))

    def combine(self, other: TopK) -> TopK:
        """The exact top-k of two partial states (e.g. from two processes)."""
        return self.merge(other.values, other.indices, other.ys, other.xs)

    def to(self, device: torch.device | str) -> TopK:
        return TopK(*(t.to(device) for t in (self.values, self.indices, self.ys, self.xs)))

    def state(self) -> dict[str, Tensor]:
        return {"values": self.values.cpu(), "indices": self.indices.cpu(),
                "ys": self.ys.cpu(), "xs": self.xs.cpu()}

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> TopK:
        return cls(state["values"], state["indices"], state["ys"], state["xs"])

    def records(self) -> list[tuple[int, int, int, float, int, int]]:
        """Filled slots as ``(channel, rank, index, value, y, x)`` rows, best first per channel."""
        rows = []
        values, indices = self.values.cpu().tolist(), self.indices.cpu().tolist()
        ys, xs = self.ys.cpu().tolist(), self.xs.cpu().tolist()
        for c in range(self.channels):
            for r in range(self.k):
                if indices[c][r] != EMPTY:
                    rows.append((c, r, indices[c][r], values[c][r], ys[c][r], xs[c][r]))
        return rows


def _select(values: Tensor, indices: Tensor, ys: Tensor, xs: Tensor, k: int) -> TopK:
    """Keep the first ``k`` of each row under (value desc, index asc)."""
    values = values.float()
    values = values.masked_fill(torch.isnan(values), float("-inf"))
    by_index = torch.sort(indices, dim=1, stable=True).indices
    values, indices = values.gather(1, by_index), indices.gather(1, by_index)
    ys, xs = ys.gather(1, by_index), xs.gather(1, by_index)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return TopK(values.gather(1, order), indices.gather(1, order), ys.gather(1, order),
                xs.gather(1, order))
