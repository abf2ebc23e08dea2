"""``--model timm:NAME`` takes the model's own preprocessing from timm's data config and says so.

The weights are a seeded random state dict passed with ``--weights`` (nothing is downloaded: the
model is then built with ``pretrained=False``). The reference is timm's own
``resolve_data_config`` on the same architecture.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from timm.data import resolve_data_config

from convscope.cli.main import main
from convscope.model import load_model


def _weights(name: str, tmp_path: Path) -> tuple[Path, dict]:
    """A seeded random state dict of the architecture, and timm's data config of it."""
    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False)
    path = tmp_path / f"{name}.pth"
    torch.save(net.state_dict(), path)
    return path, resolve_data_config({}, model=net)


def test_timm_model_takes_its_data_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "mobilevit_xxs"  # 256 pixels, mean 0, std 1, crop 0.9, bicubic: none of them defaults
    weights, config = _weights(name, tmp_path)
    model = load_model(f"timm:{name}", weights=weights)
    spec = model.spec
    assert spec.input_size == tuple(config["input_size"][1:]) and spec.channels == config["input_size"][0]
    assert spec.mean == tuple(config["mean"]) and spec.std == tuple(config["std"])
    assert spec.resize == "crop" and spec.crop_fraction == config["crop_pct"]
    assert (config["input_size"], config["mean"], config["crop_pct"]) == ((3, 256, 256), (0, 0, 0), 0.9)
    assert main(["layers", "--model", f"timm:{name}", "--weights", str(weights)]) == 0
    out = capsys.readouterr().out
    assert f"from timm's data config of '{name}'" in out
    assert "preprocessing: 256x256, mean (0.0, 0.0, 0.0), std (1.0, 1.0, 1.0), crop 0.9" in out
    assert "'bicubic' interpolation is done bilinearly" in out


def test_options_given_override_the_data_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "mobilenetv3_small_050"
    weights, config = _weights(name, tmp_path)
    argv = ["layers", "--model", f"timm:{name}", "--weights", str(weights),
            "--input-size", "64", "--mean", "0.1,0.2,0.3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "preprocessing: 64x64, mean (0.1, 0.2, 0.3), " in out
    assert f"std {tuple(config['std'])}, crop {config['crop_pct']:g}" in out  # the rest is timm's
    assert "with input_size, mean given" in out
    assert "x32x32" in out  # the layers ran at the size given: the stem halves 64
