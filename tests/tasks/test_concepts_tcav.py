"""The TCAV task and command on image folders of the planted model: files written, numbers kept,
bad folders refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import convscope
from convscope.cli.main import main
from convscope.data.planted import write_tcav_folders
from convscope.errors import BadArgument, BadImage
from convscope.model import Model, load_model


@pytest.fixture(scope="module")
def planted() -> Model:
    torch.set_num_threads(2)
    return load_model("digits_planted")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_tcav_folders(tmp_path_factory.mktemp("planted"), n=20, runs=4)


def test_folders_give_the_planted_answer_and_files(planted: Model, folders: dict[str, Path],
                                                   tmp_path: Path) -> None:
    report = convscope.tcav(planted, {"stripes": folders["stripes"]}, folders["random"],
                            folders["class7"], "7", ["block3", "block4"])
    assert report.result.scores.shape == (1, 2, 4) and report.result.inputs == 20
    assert (report.result.mean >= 0.9).all() and report.result.positive[0, 0]  # 4 runs: a weak test
    paths = report.save(tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["runs"] == 4 and data["tests"] == 2 and data["target_name"] == "7"
    assert [r["layer"] for r in data["results"]] == ["block3", "block4"]
    assert data["results"][0]["p_corrected"] == pytest.approx(float(report.result.corrected[0, 0]))
    assert Image.open(paths["png"]).size[0] > 300 and "TCAV" in paths["html"].read_text()


def test_bad_folders_are_one_line(planted: Model, folders: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadImage, match=r"concept 'stripes' folder '.*empty' holds no images"):
        convscope.tcav(planted, {"stripes": empty}, folders["random"], folders["class7"], 7)
    few = tmp_path / "few"
    for i in range(2):
        (few / f"r{i}").mkdir(parents=True)
        (few / f"r{i}" / "a.png").write_bytes((folders["random"] / "random00" / "0000.png").read_bytes())
        (few / f"r{i}" / "b.png").write_bytes((folders["random"] / "random00" / "0001.png").read_bytes())
    with pytest.raises(BadArgument, match=r"2 random set\(s\); give at least 3"):
        convscope.tcav(planted, {"stripes": folders["stripes"]}, few, folders["class7"], 7)
    with pytest.raises(BadImage, match="has no subfolders"):
        convscope.tcav(planted, {"stripes": folders["stripes"]}, folders["stripes"], folders["class7"], 7)


def test_command_writes_png_json_html(folders: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["tcav", "--model", "digits_planted", "--concept", f"stripes={folders['stripes']}",
                 "--randoms", str(folders["random"]), "--inputs", str(folders["class3"]), "--target", "3",
                 "--layer", "block4", "--out", str(out)])
    assert code == 0 and {p.name for p in out.iterdir()} == {"tcav.png", "tcav.json", "tcav.html"}
    printed = capsys.readouterr().out
    assert "stripes" in printed and "block4" in printed and "positive" not in printed
    assert main(["tcav", "--model", "digits_planted", "--concept", "stripes", "--randoms", "x",
                 "--inputs", "y", "--target", "3"]) == 2
    assert "give NAME=FOLDER" in capsys.readouterr().err
