"""Exact nearest neighbours against brute force (both metrics), ties, exclusions, FAISS path."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from convscope.errors import BadArgument
from convscope.methods.dataset import nearest_neighbors


def brute(q: torch.Tensor, x: torch.Tensor, metric: str) -> torch.Tensor:
    q64, x64 = q.double(), x.double()
    if metric == "l2":
        return torch.cdist(q64, x64)
    return 1 - (q64 / q64.norm(dim=1, keepdim=True)) @ (x64 / x64.norm(dim=1, keepdim=True)).t()


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    x[50] = x[10]  # exact duplicate: a tie, the lower index must come first
    x[[7, 99]] = float("nan")  # skipped images
    q = torch.cat([x[10:11], torch.randn(4, 16, generator=g)])
    return q, x


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("chunk", [17, 1000])
def test_matches_brute_force(data, metric: str, chunk: int) -> None:
    q, x = data
    found = nearest_neighbors(q, x, k=6, metric=metric, chunk_size=chunk)
    ref = brute(q, x, metric)
    ref[:, [7, 99]] = float("inf")
    ref_d, ref_i = ref.sort(dim=1, stable=True)
    assert torch.equal(found.indices, ref_i[:, :6])
    assert torch.allclose(found.distances.double(), ref_d[:, :6], atol=1e-4)
    assert found.indices[0, :2].tolist() == [10, 50]  # the tie, lower index first


def test_exclude_padding_and_errors(data) -> None:
    q, x = data
    found = nearest_neighbors(x[10], x, k=3, exclude=torch.tensor([10]))
    assert found.indices[0, 0] == 50 and 10 not in found.indices[0].tolist()
    small = nearest_neighbors(q, x[:4], k=6, metric="l2")
    assert (small.indices[:, 4:] == -1).all() and torch.isinf(small.distances[:, 4:]).all()
    assert (small.indices[:, :4] >= 0).all()
    with pytest.raises(BadArgument):
        nearest_neighbors(q, x, metric="dot")  # type: ignore[arg-type]
    with pytest.raises(BadArgument):
        nearest_neighbors(q[:, :3], x)


def test_faiss_path_gives_the_same_answer(data, monkeypatch: pytest.MonkeyPatch) -> None:
    """FAISS is optional: a stand-in with its flat-index API checks our index mapping."""
    class Flat:
        def __init__(self, dim: int, ip: bool) -> None:
            self.ip, self.rows = ip, np.zeros((0, dim), np.float32)

        def add(self, rows: np.ndarray) -> None:
            self.rows = np.concatenate([self.rows, rows])

        def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            score = q @ self.rows.T if self.ip else ((q[:, None] - self.rows[None]) ** 2).sum(-1)
            order = np.argsort(-score if self.ip else score, axis=1, kind="stable")[:, :k]
            return np.take_along_axis(score, order, 1), order

    fake = types.SimpleNamespace(IndexFlatIP=lambda d: Flat(d, True), IndexFlatL2=lambda d: Flat(d, False))
    monkeypatch.setitem(sys.modules, "faiss", fake)
    q, x = data
    for metric in ("cosine", "l2"):
        ours = nearest_neighbors(q, x, k=5, metric=metric, exclude=torch.tensor([10, -1, -1, -1, -1]))
        theirs = nearest_neighbors(q, x, k=5, metric=metric, exclude=torch.tensor([10, -1, -1, -1, -1]),
                                   use_faiss=True)
        assert torch.equal(ours.indices, theirs.indices)
        assert torch.allclose(ours.distances, theirs.distances, atol=1e-4)
