"""The atlas store: atomic creation, chunk commits, the finished tables and every reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from convscope.data.atlas import Atlas, ImageRow, make_thumbnails, pack_state, unpack_state
from convscope.errors import BadArgument

CONFIG = {"model": "m", "layers": ["a", "b"], "k": 2, "dataset": None, "chunk_size": 2,
          "class_names": ["x", "y"]}


def new_atlas(path: Path) -> Atlas:
    return Atlas.create(path, CONFIG, ["s0", "s1", "s2"], [0, 1, 1], {"a": 2, "b": 3}, 4)


def test_create_commit_finish_and_read(tmp_path: Path) -> None:
    atlas = new_atlas(tmp_path / "at")
    assert [p.name for p in tmp_path.iterdir()] == ["at"]  # no temporary folder left behind
    assert atlas.resume_point() == (0, None) and not atlas.complete
    with pytest.raises(BadArgument, match="unfinished"):
        Atlas.open(tmp_path / "at")
    thumbs = np.full((2, 4, 4, 3), 7, np.uint8)
    atlas.write_arrays([0, 2], {"a": np.ones((2, 2), np.float32), "b": np.zeros((2, 3), np.float32)},
                       thumbs)
    state = {"a": {"values": torch.tensor([[1.5]])}}
    atlas.commit_chunk(1, [ImageRow(0, 0, 1, 0.75, "ok"), ImageRow(1, None, -1, float("nan"),
                                                                    "skipped", "bad file"),
                           ImageRow(2, 1, 0, 0.5, "ok")], pack_state(state))
    done, blob = Atlas.open(tmp_path / "at", partial=True).resume_point()
    assert done == 1 and torch.equal(unpack_state(blob)["a"]["values"], state["a"]["values"])
    atlas.finish({"a": [(0, 0, 2, 3.0, 1, 0), (0, 1, 0, 2.0, 0, 1)], "b": []})

    opened = Atlas.open(tmp_path / "at")
    assert opened.complete and opened.layers == ["a", "b"] and opened.k == 2 and len(opened) == 3
    assert opened.class_names == ["x", "y"] and opened.scanned == 3 and opened.meta["skipped"] == 1
    assert opened.labels().tolist() == [0, 1, 1] and opened.predictions().tolist() == [1, -1, 0]
    assert opened.valid().tolist() == [True, False, True] and opened.sources() == ["s0", "s1", "s2"]
    assert opened.skipped() == [(1, "s1", "bad file")]
    emb = opened.embeddings("a")
    assert emb.dtype == np.float32 and emb.shape == (3, 2) and np.isnan(emb[1]).all() and emb[0, 0] == 1
    assert opened.thumbnails([2, 0]).tolist() == thumbs.tolist() and opened.thumbnails().shape == (3, 4, 4, 3)
    top = opened.top("a", 0)
    assert [(r.rank, r.index, r.value, r.y, r.x, r.source) for r in top] == [
        (0, 2, 3.0, 1, 0, "s2"), (1, 0, 2.0, 0, 1, "s0")]
    assert len(opened.top("a", 0, k=1)) == 1 and opened.top("b", 2) == []
    assert opened.resume_point() == (1, None)
    with pytest.raises(BadArgument, match="not in atlas"):
        opened.embeddings("c")
    with pytest.raises(BadArgument, match="outside layer"):
        opened.top("a", 2)


def test_partial_reads_memory_map_chunks_rows_and_source_search(tmp_path: Path) -> None:
    n = 23
    sources = [f"dir/img_{i}%.png" for i in range(n)]
    atlas = Atlas.create(tmp_path / "at", {**CONFIG, "layers": ["a"]}, sources, [i % 2 for i in range(n)],
                         {"a": 3}, 2)
    emb = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    emb[5, 1] = np.nan  # a row the scan left unfinished: not valid even if its status said ok
    atlas.write_arrays(list(range(n)), {"a": emb}, np.zeros((n, 2, 2, 3), np.uint8))
    rows = [ImageRow(i, None, i % 3, 0.5, "ok") for i in range(n)]
    rows[9] = ImageRow(9, None, -1, float("nan"), "skipped", "bad")
    atlas.commit_chunk(1, rows, pack_state({}))
    atlas.finish({})
    opened = Atlas.open(tmp_path / "at")
    mapped = opened.embedding_rows("a")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    assert np.array_equal(mapped, emb, equal_nan=True)
    keep = np.array([i not in (5, 9) for i in range(n)])
    for chunk in (1, 4, 7, 100):  # chunk borders on, before and after the bad rows
        idx, values = opened.valid_embeddings("a", chunk_rows=chunk)
        assert idx.tolist() == np.flatnonzero(keep).tolist() and np.array_equal(values, emb[keep])
    got = opened.rows([9, 0, 9])
    assert got[1] == (0, "dir/img_0%.png", 0, 0, 0.5, "ok") and got[0] == got[2]
    assert got[0][:4] == (9, "dir/img_9%.png", 1, -1) and np.isnan(got[0][4]) and got[0][5] == "skipped"
    with pytest.raises(BadArgument, match="index 23 is outside"):
        opened.rows([1, 23])
    assert opened.find_sources("IMG_1").tolist() == [1, *range(10, 20)]
    assert opened.find_sources("2%").tolist() == [2, 12, 22]  # % is a character, not a wildcard
    assert opened.find_sources("img%").tolist() == [] and opened.find_sources("g_").tolist() == list(range(n))
    assert opened.find_sources("dir").tolist() == []  # the folder is not the file name


def test_refusals(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    with pytest.raises(BadArgument, match="not an empty folder"):
        new_atlas(tmp_path / "full")
    assert (tmp_path / "full" / "x.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    assert new_atlas(tmp_path / "empty").size == 3  # an empty folder is fine
    with pytest.raises(BadArgument, match="not an atlas"):
        Atlas.open(tmp_path / "full")


def test_thumbnails_gray_and_colour() -> None:
    gray = torch.linspace(0, 1, 16).view(1, 1, 4, 4)
    out = make_thumbnails(gray, 4)
    assert out.shape == (1, 4, 4, 3) and out.dtype == np.uint8
    assert out[0, 0, 0].tolist() == [0, 0, 0] and out[0, 3, 3].tolist() == [255, 255, 255]
    small = make_thumbnails(torch.ones(2, 3, 32, 48), 8)
    assert small.shape == (2, 8, 8, 3) and (small == 255).all()
