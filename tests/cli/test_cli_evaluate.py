"""convscope evaluate (faithfulness table and JSON) and the report's faithfulness lines."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from torch import nn

from convscope.cli import main as cli


@pytest.fixture
def run(monkeypatch):
    """``convscope ARGV`` through the real entry point."""
    return cli.main


def test_evaluate_json_has_every_metric_per_image_and_mean(run, tmp_path, capsys) -> None:
    out = tmp_path / "results.json"
    code = run(["evaluate", "sample:cat", "sample:coffee", "--method", "gradcam", "--steps", "4",
                "--box", "0,0,300,451", "--box", "100,150,300,450", "--out", str(out), "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed == json.loads(out.read_text())
    assert printed["targets"] == [285, 967] and printed["steps"] == 4
    # the coffee box in the centred 400x400 crop of the 600x400 photo (columns from 100), scaled
    # by 224 / 400 = 0.56; the whole-cat box clipped to its crop
    assert printed["boxes"] == [[0, 0, 224, 224], [56, 28, 168, 196]]
    (row,) = printed["methods"]
    assert row["method"] == "gradcam" and row["layer"] == "_relu_head"
    cat, coffee = row["per_image"]
    assert cat["pointing_game"] == 1.0 and cat["energy"] == pytest.approx(1.0)  # the whole image
    for image in (cat, coffee):
        assert 0 <= image["deletion_auc"] <= 1 and 0 <= image["insertion_auc"] <= 1
        assert 0 <= image["energy"] <= 1 and 0 <= image["iou"] <= 1
    assert row["deletion_auc_mean"] == pytest.approx((cat["deletion_auc"] + coffee["deletion_auc"]) / 2,
                                                     abs=1e-4)


def test_evaluate_table_with_sanity(run, capsys) -> None:
    code = run(["evaluate", "sample:cat", "--method", "gradcam,guided_backprop", "--steps", "2",
                "--sanity", "--sanity-steps", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[0].split() == ["method", "deletion_auc↓", "insertion_auc↑", "sanity", "ρmin", "flag"]
    assert lines[1].startswith("gradcam ") and lines[1].endswith(" ok")  # falls to -0.07 at step 2
    assert lines[2].startswith("guided_backprop ") and lines[2].endswith("INSENSITIVE")


def test_a_method_that_cannot_run_shows_its_error_in_its_row(run, tmp_path, capsys) -> None:
    module = types.ModuleType("cs_eval_flat_head")

    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(2 * 224 * 224, 3))

    module.make = make
    sys.modules["cs_eval_flat_head"] = module
    try:
        code = run(["evaluate", "sample:cat", "--method", "cam,saliency", "--steps", "2",
                    "--model", "cs_eval_flat_head:make", "--json"])
    finally:
        del sys.modules["cs_eval_flat_head"]
    rows = json.loads(capsys.readouterr().out)["methods"]
    assert code == 0 and "error" in rows[0] and "deletion_auc_mean" in rows[1]


@pytest.mark.parametrize(("argv", "needle"), [
    (["--method", "gradcamm"], "did you mean gradcam"),
    (["--method", "saliency", "--box", "0,0,10,10", "--box", "0,0,5,5"], "one box per image"),
    (["--method", "saliency", "--box", "0,0,10"], "four numbers"),
    (["--method", "saliency", "--box", "0,0,400,10"], "does not fit the 451x300 image"),
    (["--method", "saliency", "--steps", "0"], "positive"),
    (["--method", "saliency", "--target", "egyptian kat"], "did you mean 'Egyptian cat'"),
])
def test_evaluate_errors_are_one_line(run, capsys, argv: list[str], needle: str) -> None:
    code = run(["evaluate", "sample:cat", *argv])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_report_cards_show_deletion_and_insertion_auc(run, tmp_path) -> None:
    code = run(["report", "sample:cat", "--methods", "gradcam", "--faithfulness-steps", "3",
                "--out", str(tmp_path)])
    page = (tmp_path / "report.html").read_text()
    assert code == 0 and "deletion AUC 0." in page and "insertion AUC 0." in page
