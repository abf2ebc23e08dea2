"""benchmarks.check: a goal passes, a planted slowdown turns its row red and the exit status
non-zero, every run lands in the history, and the README table comes from a full run only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import check
from benchmarks.goals import GOALS

TINY = Path(__file__).with_name("tiny_goals.py")


def run(tmp_path: Path, *extra: str) -> tuple[int, list[dict]]:
    history = tmp_path / "history.jsonl"
    code = check.main(["--goals", str(TINY), "--history", str(history), *extra])
    return code, [json.loads(line) for line in history.read_text().splitlines()]


def test_a_met_goal_passes_and_is_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, runs = run(tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    (row,) = runs[-1]["rows"]
    assert row["goal"] == "tiny-nap" and row["passed"] and row["ratio"] <= 2.0
    assert runs[-1]["commit"] and not runs[-1]["full"]  # a --goals run never feeds the README
    assert "tiny-nap" in out and "pass" in out


def test_a_planted_sleep_turns_the_row_red(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, runs = run(tmp_path, "--plant", "sleep=50")
    out = capsys.readouterr().out
    assert code == 1, out
    (row,) = runs[-1]["rows"]
    assert not row["passed"] and row["ratio"] > 5 and runs[-1]["plant"] == "sleep=50"
    assert "FAIL" in out and "missed: tiny-nap" in out


def test_disabling_the_frozen_graph_turns_the_row_red(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    history = tmp_path / "history.jsonl"
    goals = ["--goals", str(Path(__file__).with_name("frozen_goals.py")), "--history", str(history)]
    assert check.main(goals) == 0, capsys.readouterr().out
    assert check.main([*goals, "--plant", "no-frozen"]) == 1
    assert "missed: tiny-frozen" in capsys.readouterr().out
    fine, planted = (json.loads(line) for line in history.read_text().splitlines())
    assert fine["rows"][0]["passed"] and not planted["rows"][0]["passed"]
    assert planted["plant"] == "no-frozen" and not planted["full"]


def test_a_group_that_cannot_run_fails_its_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.py"
    failing = "raise RuntimeError('no such library')\n    return [ratio("
    broken.write_text(TINY.read_text().replace("return [ratio(", failing))
    history = tmp_path / "history.jsonl"
    code = check.main(["--goals", str(broken), "--history", str(history)])
    assert code == 2
    assert "no such library" in capsys.readouterr().out


def test_a_group_without_its_reference_is_skipped_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The cam_family group where pytorch-grad-cam is missing: SKIP and why, neither met nor missed."""
    skipping = tmp_path / "skipping.py"
    skip = ("from benchmarks.cam_family import Skipped\n    raise Skipped('grad-cam is not here')\n"
            "    return [ratio(")
    skipping.write_text(TINY.read_text().replace("return [ratio(", skip))
    history = tmp_path / "history.jsonl"
    code = check.main(["--goals", str(skipping), "--history", str(history)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "SKIP (skipped: grad-cam is not here)" in out and "0 of 1 goals met; 1 skipped" in out
    (row,) = json.loads(history.read_text().splitlines()[-1])["rows"]
    assert not row["passed"] and row["error"] == "skipped: grad-cam is not here"


def test_cam_family_is_skipped_where_no_interpreter_has_grad_cam(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from benchmarks import cam_family

    monkeypatch.setattr(cam_family, "has_reference", lambda: False)
    monkeypatch.setattr(cam_family, "ZOO_PYTHON", tmp_path / "no-python")
    with pytest.raises(cam_family.Skipped, match="pytorch_grad_cam is not importable"):
        cam_family.group_cam_family(check.Context(True, None, torch.device("cpu")))


def test_goals_are_well_formed() -> None:
    ids = [g.id for g in GOALS]
    assert len(ids) == len(set(ids))
    for goal in GOALS:
        assert goal.group in check.GROUPS, goal
        assert (goal.max_ratio is None) != (goal.max_ms is None), goal
        assert goal.source, goal


def full_run(commit: str) -> dict:
    rows = [{"goal": g.id, "bound": g.bound, "passed": True, "error": "", "call_ms": 10.0,
             "anchor_ms": 20.0, "first_ms": 30.0, "ratio": 0.123, "low": 0.1, "high": 0.2}
            for g in GOALS]
    return {"date": "2026-12-07T21:00:00+00:00", "commit": commit, "dirty": False, "full": True,
            "quick": False, "plant": None, "allocator": "default malloc", "threads": 2, "cpus": 2,
            "torch": "2.13.0", "load_before": [1.0, 1.0, 1.0], "rows": rows}


def test_write_readme_replaces_only_the_table(tmp_path: Path) -> None:
    history, readme = tmp_path / "history.jsonl", tmp_path / "README.md"
    head = check.git("rev-parse", "HEAD")
    planted = full_run(head) | {"full": False, "plant": "sleep=50"}
    history.write_text(json.dumps(full_run(head)) + "\n" + json.dumps(planted) + "\n")
    readme.write_text(f"# title\n\nbefore\n{check.MARK_START}\nold table\n{check.MARK_END}\nafter\n")
    assert check.write_readme(history, readme, force=True) == head
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n") and text.endswith("after\n")
    assert "old table" not in text and f"`{head[:10]}`" in text
    assert text.count("0.12x (0.10-0.20)") == sum(g.max_ratio is not None for g in GOALS)


def test_write_readme_refuses_a_run_older_than_the_code(tmp_path: Path) -> None:
    history, readme = tmp_path / "history.jsonl", tmp_path / "README.md"
    first = check.git("rev-list", "--max-parents=0", "HEAD").splitlines()[0]
    history.write_text(json.dumps(full_run(first)) + "\n")
    readme.write_text(f"{check.MARK_START}\n{check.MARK_END}\n")
    with pytest.raises(SystemExit, match="run the check again"):
        check.write_readme(history, readme)
