"""Streaming top-k: any grouping of candidates gives the brute-force ranking, ties to lower index."""

from __future__ import annotations

import torch

from convscope.methods.dataset.topk import EMPTY, TopK


def brute(values: torch.Tensor, k: int) -> list[list[tuple[float, int]]]:
    """values (N, C) -> per channel the k best (value, index) by (value desc, index asc)."""
    n, c = values.shape
    return [sorted(((float(values[i, ch]), i) for i in range(n)), key=lambda t: (-t[0], t[1]))[:k]
            for ch in range(c)]


def as_pairs(state: TopK) -> list[list[tuple[float, int]]]:
    return [[(v, i) for v, i in zip(vs, ix) if i != EMPTY]
            for vs, ix in zip(state.values.tolist(), state.indices.tolist())]


def test_batches_in_any_order_and_grouping_match_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 4, (37, 6), generator=g).float()  # many ties
    expected = brute(values, 5)
    for split in (1, 4, 37):
        state = TopK.empty(6, 5)
        for start in range(0, 37, split):
            part = values[start:start + split]
            idx = torch.arange(start, start + part.shape[0])
            state = state.update(part, torch.zeros_like(part, dtype=torch.long), idx, width=1)
        assert as_pairs(state) == expected
    # partial states from interleaved shards (as under torchrun), combined in reverse order
    parts = []
    for r in range(3):
        idx = torch.arange(r, 37, 3)
        parts.append(TopK.empty(6, 5).update(values[idx], torch.zeros(len(idx), 6, dtype=torch.long),
                                             idx, width=1))
    merged = parts[2].combine(parts[1]).combine(parts[0])
    assert as_pairs(merged) == expected


def test_positions_nan_and_underfull() -> None:
    values = torch.tensor([[1.0, float("nan")], [3.0, 2.0]])
    positions = torch.tensor([[7, 1], [5, 0]])
    state = TopK.empty(2, 3).update(values, positions, torch.tensor([10, 11]), width=4)
    assert state.indices[0, :2].tolist() == [11, 10] and state.indices[0, 2] == EMPTY
    assert (state.ys[0, :2].tolist(), state.xs[0, :2].tolist()) == ([1, 1], [1, 3])
    assert state.indices[1, :2].tolist() == [11, 10]  # NaN ranks last (as -inf)
    records = state.records()
    assert len(records) == 4 and records[0] == (0, 0, 11, 3.0, 1, 1)
    again = TopK.from_state(state.state())
    assert torch.equal(again.values, state.values) and torch.equal(again.indices, state.indices)


def test_update_prefilter_keeps_threshold_ties_from_later_batches_with_lower_indices() -> None:
    """Once full, update only merges candidates at or above each channel's k-th value; a tie at
    that value from a batch with LOWER indices (batches arriving out of order) must still win."""
    g = torch.Generator().manual_seed(1)
    maps = torch.randint(0, 3, (40, 4, 2, 3), generator=g).float()  # (N, C, H, W), many ties
    flat = maps.flatten(2)
    values = flat.amax(2)
    expected = brute(values, 6)
    state = TopK.empty(4, 6)
    for start in range(32, -1, -8):  # batches with ever lower indices
        part = flat[start:start + 8]

        def locate(rows: torch.Tensor, channels: torch.Tensor, part=part) -> torch.Tensor:
            return part[rows, channels].argmax(1)

        state = state.update(values[start:start + 8], locate, torch.arange(start, start + 8), width=3)
    assert as_pairs(state) == expected
    for c in range(4):
        for r in range(6):
            i, pos = int(state.indices[c, r]), int(state.ys[c, r] * 3 + state.xs[c, r])
            assert pos == int(flat[i, c].argmax())
