"""convscope visualize: single objectives, batched units, galleries, starts, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.cli import main as cli_main
from convscope.cli import visualize as cli_visualize
from convscope.data import load_image
from convscope.model import Model


@pytest.fixture
def run(lite0: Model, monkeypatch):  # type: ignore[no-untyped-def]
    """``convscope ...`` through the real entry point, with the session's model (no reload)."""
    monkeypatch.setattr(cli_visualize, "model_from_args", lambda _args: lite0)
    return cli_main.main


def test_objective_to_png_with_json(run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "unit.png"
    code = run(["visualize", "--objective", "channel:_blocks.2:5", "--steps", "3", "--size", "48",
                "--out", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and Image.open(out).size == (48, 48)
    assert summary["objective"] == "channel(_blocks.2:5)" and summary["param"] == "fourier"
    assert len(summary["values"]) == 1 and summary["png"] == str(out)


def test_gallery_is_one_batched_optimization_in_a_captioned_grid(run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "gallery.png"
    code = run(["visualize", "--layer", "_blocks.2", "--gallery", "3", "--first", "4", "--steps", "2",
                "--size", "40", "--param", "pixel", "--out", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    grid = Image.open(out)
    assert code == 0 and summary["objective"] == "channel(_blocks.2:[4,5,6])"
    assert len(summary["values"]) == 3 and grid.width > 3 * 40 and grid.height > 40


def test_start_image_and_plain_text_output(run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "steered.png"
    code = run(["visualize", "--objective", "logit:tabby", "--steps", "1", "--lr", "1e-9",
                "--param", "pixel", "--no-transforms", "--start", "sample:cat", "--out", str(out)])
    assert code == 0 and "logit(tabby)" in capsys.readouterr().out
    saved = torch.from_numpy(np.asarray(Image.open(out)).copy()).permute(2, 0, 1) / 255
    cat = torch.nn.functional.interpolate(load_image("sample:cat")[None], size=(224, 224),
                                          mode="bilinear", antialias=True, align_corners=False)[0]
    assert (saved - cat).abs().mean() < 0.01


@pytest.mark.parametrize(("argv", "needle"), [
    (["--objective", "chanel:_blocks.2:0"], "KIND one of"),
    (["--objective", "channel:_blocks.22:0"], "did you mean"),
    (["--objective", "channel:_blocks.2:99"], "out of range"),
    (["--objective", "logit:egyptian kat"], "did you mean 'Egyptian cat'"),
    (["--gallery", "3"], "--layer"),
    (["--layer", "_blocks.2"], "--gallery"),
    ([], "--objective"),
    (["--objective", "channel:_blocks.2:0,1", "--batch", "3"], "2 units"),
    (["--objective", "logit:1", "--start", "no_such_file.png"], "no_such_file.png"),
])
def test_errors_are_one_line_and_exit_2(run, tmp_path, capsys, argv: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
    code = run(["visualize", *argv, "--steps", "1", "--size", "32", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
