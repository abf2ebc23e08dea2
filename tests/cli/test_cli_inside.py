"""``convscope filters | featuremaps | mask``: PNGs written, JSON summaries, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.cli.runner import run


def test_filters_first_layer(capsys, tmp_path: Path) -> None:
    png = tmp_path / "f.png"
    code, out, _ = run(capsys, "filters", "--out", str(png), "--json")
    data = json.loads(out)
    assert code == 0 and data["layer"] == "_conv_stem" and data["view"] == "rgb"
    assert data["kernel"] == [3, 3] and data["filters"] == list(range(32)) and data["pages"] == 1
    with Image.open(png) as img:
        assert img.mode == "RGB" and img.width >= 8 * 48  # 8 columns of enlarged 3x3 tiles


def test_filters_depthwise_paging_text(capsys, tmp_path: Path) -> None:
    png = tmp_path / "dw.png"
    code, out, _ = run(capsys, "filters", "--layer", "_blocks.1._depthwise_conv", "--max", "40",
                       "--page", "2", "--sort", "norm", "--out", str(png))
    assert code == 0 and "16 of 96 filters, page 3/3, depthwise view" in out and png.exists()


def test_featuremaps_json_sorted(capsys, tmp_path: Path) -> None:
    png = tmp_path / "fm.png"
    code, out, _ = run(capsys, "featuremaps", "sample:cat", "--layer", "_blocks.3", "--top", "5",
                       "--sort", "max", "--out", str(png), "--json")
    data = json.loads(out)
    maxima = [c["max"] for c in data["channels"]]
    assert code == 0 and data["shape"] == [40, 28, 28] and len(maxima) == 5
    assert maxima == sorted(maxima, reverse=True)
    with Image.open(png) as img:
        assert img.width > 3 * 112  # input thumbnail + maps, enlarged 4x


def test_mask_quantile_json(capsys, tmp_path: Path) -> None:
    png = tmp_path / "m.png"
    code, out, _ = run(capsys, "mask", "sample:cat", "--layer", "_blocks.10", "--channel", "75",
                       "--quantile", "0.99", "--out", str(png), "--json")
    data = json.loads(out)
    assert code == 0 and data["quantile"] == 0.99
    assert data["fraction"] == pytest.approx(0.01, abs=1e-4)
    with Image.open(png) as img:
        assert img.width > 3 * 224  # image, heat overlay, masked image side by side


def test_mask_threshold_text(capsys, tmp_path: Path) -> None:
    png = tmp_path / "t.png"
    code, out, _ = run(capsys, "mask", "sample:cat", "--layer", "_blocks.10", "--channel", "75",
                       "--threshold", "1e9", "--out", str(png))
    assert code == 0 and "activation >= 1e+09" in out and "0.00% of pixels" in out


@pytest.mark.parametrize(("argv", "needle"), [
    (["filters", "--layer", "_bn0"], "is a BatchNorm2d, not a Conv2d"),
    (["filters", "--layer", "_conv_stme"], "did you mean _conv_stem"),
    (["filters", "--page", "5"], "--page 5: "),
    (["filters", "--view", "depthwise"], "one input channel"),
    (["featuremaps", "sample:cat", "--layer", "_fc"], "not a map of the image"),
    (["featuremaps", "sample:cat", "--layer", "_blocks.3", "--top", "0"], "--top 0: "),
    (["mask", "sample:cat", "--layer", "_blocks.10", "--channel", "112"], "channel 112"),
    (["mask", "sample:cat", "--layer", "_blocks.10", "--channel", "1", "--quantile", "1.5"],
     "--quantile 1.5: "),
    (["mask", "sample:cat", "--layer", "_blocks.10", "--channel", "1", "--quantile", "0.9",
      "--threshold", "1"], "not allowed with argument"),
    (["mask", "sample:cat", "--layer", "_blocks.10"], "--channel"),
])
def test_errors_are_one_line_exit_2(capsys, tmp_path: Path, argv: list[str], needle: str) -> None:
    code, _, err = run(capsys, *argv, "--out", str(tmp_path / "x.png"))
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.png").exists()
