"""Dataset -> atlas: resumable after a failure or SIGKILL at any chunk, identical under torchrun,
and robust to unreadable files."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.data.atlas import Atlas
from convscope.errors import BadArgument
from convscope.tasks.scan import scan_dataset

FIXTURES = Path(__file__).with_name("scan_fixtures.py")
N, CHUNK, BATCH = 40, 8, 3


class Boom(Exception):
    pass


def dump(path: Path) -> dict[str, object]:
    """Every table row and every array file's bytes: equal dumps mean identical atlases."""
    out: dict[str, object] = {}
    with sqlite3.connect(path / "atlas.sqlite") as con:
        for table in ("meta", "images", "topk", "state"):
            out[table] = repr(con.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall())
    for file in sorted(path.rglob("*.npy")):
        out[str(file.relative_to(path))] = file.read_bytes()
    return out


def run_scan(fx, path: Path, **kw) -> Atlas:
    return scan_dataset(fx.int_model(), fx.int_dataset(N), path, layers=["relu1", "conv2"], k=4,
                        batch_size=BATCH, chunk_size=CHUNK, **kw)


def scan_failing_at_commit(fx, path: Path, monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """A scan whose ``call``-th commit raises (after that chunk's arrays were written)."""
    original = Atlas.commit_chunk
    calls = []

    def failing(self, chunks, rows, state):
        calls.append(chunks)
        if len(calls) == call:
            raise Boom
        return original(self, chunks, rows, state)

    monkeypatch.setattr(Atlas, "commit_chunk", failing)
    with pytest.raises(Boom):
        run_scan(fx, path)
    monkeypatch.setattr(Atlas, "commit_chunk", original)


@pytest.fixture(scope="module")
def reference(fx, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    path = tmp_path_factory.mktemp("ref") / "atlas"
    atlas = run_scan(fx, path)
    assert atlas.complete and atlas.scanned == N and len(atlas.top("conv2", 0)) == 4
    assert atlas.labels().tolist() == [i % 3 for i in range(N)]
    return dump(path)


@pytest.mark.parametrize("fail_after", [0, 2, 4])
def test_resume_after_failure_between_commits(fx, reference, tmp_path: Path, fail_after: int) -> None:
    def on_commit(chunks: int) -> None:
        if chunks == fail_after + 1:
            raise Boom

    with pytest.raises(Boom):
        run_scan(fx, tmp_path / "a", on_commit=on_commit)
    with pytest.raises(BadArgument, match="unfinished"):
        Atlas.open(tmp_path / "a")
    assert Atlas.open(tmp_path / "a", partial=True).scanned == (fail_after + 1) * CHUNK
    run_scan(fx, tmp_path / "a")
    assert dump(tmp_path / "a") == reference


@pytest.mark.parametrize("fail_at", [0, 3])
def test_resume_after_failure_inside_a_chunk(fx, reference, tmp_path: Path, fail_at: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after a chunk's arrays were written but before its commit: rows are redone."""
    scan_failing_at_commit(fx, tmp_path / "a", monkeypatch, fail_at + 1)
    assert Atlas.open(tmp_path / "a", partial=True).resume_point()[0] == fail_at
    run_scan(fx, tmp_path / "a")
    assert dump(tmp_path / "a") == reference


@pytest.mark.parametrize("helper", ["threads", "inline"])
def test_helper_threads_or_not_give_the_same_atlas(fx, reference, tmp_path: Path, helper: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading ahead and committing behind (machines with a spare core) or everything in turn
    (this 2-core VM): the same atlas, also when a commit fails and the scan is resumed."""
    from concurrent.futures import ThreadPoolExecutor

    import convscope.tasks.scan as scanning

    monkeypatch.setattr(scanning, "_helper", lambda device: ThreadPoolExecutor(max_workers=1)
                        if helper == "threads" else scanning._Inline())
    run_scan(fx, tmp_path / "whole")
    assert dump(tmp_path / "whole") == reference
    scan_failing_at_commit(fx, tmp_path / "a", monkeypatch, 3)
    assert Atlas.open(tmp_path / "a", partial=True).resume_point()[0] == 2
    run_scan(fx, tmp_path / "a")
    assert dump(tmp_path / "a") == reference


def test_resume_after_sigkill(fx, reference, tmp_path: Path) -> None:
    atlas = tmp_path / "a"
    # the worker pauses 0.5 s after each commit: the kill lands there or, on a slow machine,
    # inside a later chunk (both must resume exactly); it cannot finish before the kill
    proc = subprocess.Popen([sys.executable, str(FIXTURES), str(atlas), str(N), str(CHUNK),
                             str(BATCH), "0.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("committed 2"):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert 2 <= Atlas.open(atlas, partial=True).resume_point()[0] < N // CHUNK
    run_scan(fx, atlas)
    assert dump(atlas) == reference


def test_torchrun_two_processes_equal_one(fx, reference, tmp_path: Path) -> None:
    atlas = tmp_path / "a"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(FIXTURES), str(atlas), str(N), str(CHUNK), str(BATCH)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert dump(atlas) == reference


def test_folder_with_bad_files_scans_to_completion(fx, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(5):
        pixels = (torch.randint(0, 5, (12, 12, 3), generator=g) * 63).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "cut.png").write_bytes((folder / "img0.png").read_bytes()[:60])
    with pytest.warns(UserWarning, match="skipped 3 unreadable"):
        atlas = scan_dataset(fx.int_model(), folder, tmp_path / "a", layers="conv2", k=3,
                             batch_size=2, chunk_size=3)
    assert atlas.complete and atlas.size == 8
    skipped = {Path(src).name: reason for _, src, reason in atlas.skipped()}
    assert set(skipped) == {"empty.png", "notes.txt", "cut.png"}
    assert all(reason for reason in skipped.values())
    valid = atlas.valid()
    emb = atlas.embeddings("conv2")
    assert valid.sum() == 5 and np.isfinite(emb[valid]).all() and np.isnan(emb[~valid]).all()
    assert (atlas.predictions()[~valid] == -1).all() and (atlas.labels() == -1).all()
    assert all(Path(r.source).name.startswith("img") for r in atlas.top("conv2", 1))


def test_other_config_is_refused_and_finished_atlas_reused(fx, tmp_path: Path) -> None:
    atlas = scan_dataset(fx.int_model(), fx.int_dataset(6), tmp_path / "a", layers="conv2", k=2)
    again = scan_dataset(fx.int_model(), fx.int_dataset(6), tmp_path / "a", layers="conv2", k=2)
    assert again.meta == atlas.meta
    with pytest.raises(BadArgument, match="different scan"):
        scan_dataset(fx.int_model(), fx.int_dataset(6), tmp_path / "a", layers="conv2", k=3)


@pytest.mark.parametrize("sizes", [{"batch_size": 0}, {"chunk_size": 0}, {"batch_size": -2}])
def test_zero_or_negative_sizes_are_refused(fx, tmp_path: Path, sizes: dict[str, int]) -> None:
    with pytest.raises(BadArgument, match="must be a positive integer"):
        scan_dataset(fx.int_model(), fx.int_dataset(4), tmp_path / "a", layers="conv1", **sizes)
