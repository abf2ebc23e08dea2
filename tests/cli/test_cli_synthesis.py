"""convscope adversarial | fool | invert | texture | style: files, JSON summaries, round trips, errors."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from convscope.cli import adversarial as cli_adversarial
from convscope.cli import main as cli_main
from convscope.cli import synthesis as cli_synthesis
from convscope.data import load_image
from convscope.model import Model


@pytest.fixture
def run(lite0: Model, monkeypatch):  # type: ignore[no-untyped-def]
    """``convscope ...`` through the real entry point, with the session's model (no reload)."""
    for module in (cli_adversarial, cli_synthesis):
        monkeypatch.setattr(module, "model_from_args", lambda _args: lite0)
    return cli_main.main


def test_adversarial_png_is_the_target_when_loaded_back(run, lite0: Model, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "adv.png"
    code = run(["adversarial", "sample:coffee", "--target", "goldfish", "--eps", "4/255", "--size", "64",
                "--steps", "30", "--out", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["success"] and summary["target"] == "goldfish (1)"
    assert summary["linf_255"] <= 4 and summary["eps"] == 4 / 255 and summary["quantized"]
    assert json.loads((tmp_path / "adv.json").read_text()) == summary
    back = load_image(out)
    assert back.shape == (3, 64, 64) and Image.open(tmp_path / "adv_perturbation.png").size == (64, 64)
    with torch.no_grad():
        assert int(lite0(lite0.normalize(back[None])).argmax()) == 1


def test_fgsm_l2_untargeted_and_plain_output(run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "f.png"
    code = run(["adversarial", "sample:cat", "--method", "fgsm", "--norm", "l2", "--eps", "0.5",
                "--size", "32", "--out", str(out)])
    line = capsys.readouterr().out
    assert code == 0 and line.startswith(str(out)) and "l2" in line
    summary = json.loads((tmp_path / "f.json").read_text())
    assert summary["target"] is None and summary["l2"] <= 0.5 and summary["steps"] == 1


def test_fool_invert_texture_style_write_pngs_and_json(run, tmp_path, capsys):  # type: ignore[no-untyped-def]
    cases = [
        (["fool", "--target", "1", "--steps", "2", "--size", "32"], "fool", (32, 32)),
        (["invert", "sample:cat", "--layers", "_blocks.1,_blocks.3", "--steps", "2", "--size", "32"],
         "invert", None),
        (["texture", "sample:brick", "--steps", "2", "--size", "40", "--source-size", "32"], "texture",
         (40, 40)),
        (["style", "sample:cat", "sample:coffee", "--steps", "2", "--size", "32", "--compare"], "style",
         None),
    ]
    for argv, name, size in cases:
        out = tmp_path / f"{name}.png"
        assert run([*argv, "--out", str(out), "--json"]) == 0, argv
        summary = json.loads(capsys.readouterr().out)
        assert summary == json.loads((tmp_path / f"{name}.json").read_text())
        assert summary["files"]["png"] == str(out)
        if size is not None:
            assert Image.open(out).size == size
    inversion = json.loads((tmp_path / "invert.json").read_text())
    assert inversion["layers"] == ["_blocks.1", "_blocks.3"] and len(inversion["end_distance"]) == 2
    style = json.loads((tmp_path / "style.json").read_text())
    assert style["optimizer"] == "lbfgs" and len(style["style_layers"]) == 5


@pytest.mark.parametrize("argv, message", [
    (["adversarial", "sample:cat", "--eps", "four"], "--eps"),
    (["adversarial", "sample:cat", "--eps=-1/255"], "--eps"),
    (["adversarial", "sample:cat", "--target", "not a class"], "target"),
    (["invert", "sample:cat", "--layers", "_blocks.99", "--steps", "1"], "_blocks.99"),
    (["texture", "missing.png"], "missing.png"),
    (["style", "sample:cat", "sample:brick", "--steps", "0"], "--steps"),
    (["fool", "--target", "1", "--threshold", "2"], "threshold"),
])
def test_errors_are_one_line_and_exit_2(run, capsys, argv, message) -> None:  # type: ignore[no-untyped-def]
    assert run([*argv, "--size", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and "Traceback" not in err


def test_missing_torchvision_is_a_clean_error(capsys) -> None:  # type: ignore[no-untyped-def]
    code = cli_main.main(["style", "sample:cat", "sample:brick", "--model", "torchvision:vgg19",
                          "--steps", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "torchvision" in err
