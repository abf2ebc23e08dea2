"""The dissection task and command: a mask folder read like the built-in planted set, the
built-in datasets, and mask folders that do not fit refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import convscope
from convscope.cli.main import main
from convscope.data.planted import planted_digits, save_images
from convscope.errors import BadImage
from convscope.model import Model, load_model


@pytest.fixture(scope="module")
def planted() -> Model:
    torch.set_num_threads(2)
    return load_model("digits_planted")


def write_masked(root: Path, count: int) -> None:
    """The first ``count`` planted digits as images/ and masks/stripes/ (white on the cue)."""
    data = planted_digits("heldout", "always")
    save_images(data.images[:count], root / "images")
    save_images(data.cue_masks[:count, None].float().expand(-1, 3, -1, -1), root / "masks" / "stripes")


def test_mask_folder_reads_as_the_builtin_set(planted: Model, tmp_path: Path) -> None:
    write_masked(tmp_path, 60)
    from_folder = convscope.dissect(planted, tmp_path, "block1")
    builtin = convscope.dissect(planted, "digits_planted", "block1", limit=60)
    assert from_folder.result.concepts == ["stripes"]
    # the PNGs round the cue's colours to 8 bits: the same IoUs up to that
    assert torch.allclose(from_folder.result.iou[:, 0], builtin.result.iou[:, 0], atol=2e-3)
    assert from_folder.rows(1)[0]["label"] == "stripes" and from_folder.rows(1)[0]["iou"] > 0.04


def test_masks_that_do_not_fit_are_one_line(planted: Model, tmp_path: Path) -> None:
    write_masked(tmp_path, 3)
    small = torch.ones(1, 3, 14, 14)
    save_images(small, tmp_path / "masks" / "stripes", prefix="")  # replaces 0000.png at 14x14
    with pytest.raises(BadImage, match=r"mask '.*0000.png' is 14x14 but its image '0000' is 28x28"):
        convscope.dissect(planted, tmp_path, "block3")
    with pytest.raises(BadImage, match="needs an images/ folder and a masks/ folder"):
        convscope.dissect(planted, tmp_path / "images", "block3")


def test_digit_scenes_give_one_concept_per_digit() -> None:
    segmenter = load_model("digits_segmenter")
    report = convscope.dissect(segmenter, "digit_scenes", "auto", limit=8)
    assert report.result.concepts == [str(d) for d in range(10)]
    assert report.result.iou.shape[1] == 10 and torch.isfinite(report.result.iou).all()


def test_command_writes_png_json_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["dissect", "digits_planted", "--model", "digits_planted", "--layer", "block1",
                 "--limit", "100", "--top", "3", "--out", str(tmp_path)])
    assert code == 0
    assert {p.name for p in tmp_path.iterdir()} == {"dissect.png", "dissect.json", "dissect.html"}
    assert "stripes" in capsys.readouterr().out
    data = json.loads((tmp_path / "dissect.json").read_text())
    assert data["layer"] == "block1" and len(data["units"]) == 16 and data["concepts"] == ["stripes", "ink"]
    assert main(["dissect", "digits_planted", "--model", "digits_planted", "--layer", "pool"]) == 2
    assert "has no spatial maps" in capsys.readouterr().err
