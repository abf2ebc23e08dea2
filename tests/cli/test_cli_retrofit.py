"""convscope cam-retrofit, and --cam-head putting the fitted head back on the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from convscope.cli.main import main
from convscope.data import load_image
from convscope.render import to_pil


@pytest.fixture
def two_classes(tmp_path: Path) -> Path:
    """4 crops each of the cat and the espresso, in subfolders named by the model's labels."""
    for label, sample in (("Egyptian cat", "cat"), ("espresso", "coffee")):
        folder = tmp_path / "data" / label
        folder.mkdir(parents=True)
        image = to_pil(load_image(f"sample:{sample}"))
        w, h = image.size
        for i in range(4):
            box = (i * w // 10, i * h // 12, w - (3 - i) * w // 10, h - (3 - i) * h // 12)
            image.crop(box).resize((112, 112)).save(folder / f"{i}.png")
    return tmp_path / "data"


def test_cam_retrofit_reports_accuracy_writes_head_and_maps(two_classes: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    head = tmp_path / "head.pt"
    code = main(["cam-retrofit", str(two_classes), "--layer", "_blocks.15", "--steps", "60",
                 "--holdout", "0.5", "--out", str(head), "--explain", "sample:cat",
                 "--out-dir", str(tmp_path), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["layer"] == "_blocks.15"
    assert summary["classes"] == ["Egyptian cat", "espresso"]
    assert summary["accuracy"] == 1.0 and summary["original_accuracy"] == 1.0
    assert Path(summary["head"]).is_file()
    assert Image.open(summary["pictures"][0]).size == (451, 300)  # drawn on the photo itself

    code = main(["explain", "sample:cat", "--method", "cam", "--cam-head", str(head),
                 "--out", str(tmp_path / "cam.png"), "--json"])
    explained = json.loads(capsys.readouterr().out)
    assert code == 0 and explained["targets"] == [0] and explained["target_labels"] == ["Egyptian cat"]


@pytest.mark.parametrize("content", [None, b"not a torch file", b""])
def test_a_bad_cam_head_is_one_line_and_exit_2(tmp_path: Path, content: bytes | None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    head = tmp_path / "head.pt"
    if content is not None:
        head.write_bytes(content)
    code = main(["predict", "sample:cat", "--cam-head", str(head)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "head.pt" in err
