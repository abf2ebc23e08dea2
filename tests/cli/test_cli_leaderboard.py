"""convscope leaderboard: the table and files, resuming from --out, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.runner import run

pytestmark = pytest.mark.usefixtures("one_thread")
ARGS = ("leaderboard", "mnist5k", "--model", "digits_cnn", "--methods", "saliency,gradcam",
        "--images", "6", "--steps", "4", "--batch-size", "3", "--metrics", "deletion_auc,insertion_auc")


def test_table_statements_and_files_then_a_second_run_resumes_the_finished_one(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, *ARGS, "--out", str(tmp_path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["method", "s/image", "deletion_auc", "↓"]
    assert any(line.startswith("insertion_auc (higher is better): ") for line in lines)
    assert "paired bootstrap" in out and "6 images, target label" in out
    for suffix in ("json", "csv", "html", "png"):
        assert (tmp_path / f"leaderboard.{suffix}").is_file()
    first = json.loads((tmp_path / "leaderboard.json").read_text())
    code, out, _ = run(capsys, *ARGS, "--out", str(tmp_path), "--json")
    again = json.loads(out)
    assert code == 0 and again["resumed"] == 6
    assert [r["mean"] for r in again["rows"]] == [r["mean"] for r in first["rows"]]


def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, *ARGS, "--metrics", "iou", "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "needs a box or mask" in err and "--regions" in err
    code, _, err = run(capsys, *ARGS, "--metrics", "nope", "--out", str(tmp_path))
    assert code == 2 and "metric 'nope' is not known" in err


def test_torchrun_two_processes_score_the_same_images_as_one(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    code, _, err = run(capsys, *ARGS, "--out", str(tmp_path / "one"))
    assert code == 0, err
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "convscope.cli.main", *ARGS, "--out", str(tmp_path / "two"), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    one = json.loads((tmp_path / "one" / "leaderboard.json").read_text())
    two = json.loads((tmp_path / "two" / "leaderboard.json").read_text())
    assert two["images"] == one["images"] == 6
    for a, b in zip(one["rows"], two["rows"]):  # each image in a batch of another size: not bitwise
        assert (a["method"], a["metric"], a["rank"]) == (b["method"], b["metric"], b["rank"])
        assert b["mean"] == pytest.approx(a["mean"], abs=1e-6)
        assert b["ci_low"] == pytest.approx(a["ci_low"], abs=1e-6)
    assert json.loads(done.stdout)["rows"] == two["rows"]  # rank 0 alone printed
