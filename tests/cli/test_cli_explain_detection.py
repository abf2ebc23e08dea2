"""convscope explain --box x0,y0,x1,y1 --target LABEL: one detection of a detector explained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from convscope.data.digit_scenes import make_scene

from .runner import run


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scene") / "scene5.png"
    Image.fromarray((make_scene("heldout", 5).image[0] * 255).byte().numpy()).save(path)
    return path


def test_explain_a_box_says_which_detection(scene: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "six.png"
    code, text, _ = run(capsys, "explain", str(scene), "--model", "digits_detector", "--method", "hirescam",
                        "--box", "38,81,57,105", "--target", "6", "--out", str(out), "--json")
    summary = json.loads(text)
    assert code == 0 and out.exists()
    assert summary["explained"] == ["detection #3: 6 0.73 at (38, 80, 57, 105), IoU 0.97 with the asked box"]


@pytest.mark.parametrize(("box", "label", "words"), [
    ("0,0,300,10", "6", "is not inside the 128x128 model input"),
    ("38,81,57,105", "12", "out of range"),
    ("0,0,20,20", "6", "no detection matches 6 at (0, 0, 20, 20)"),
    ("1,2,3", "6", "is not x0,y0,x1,y1"),
])
def test_bad_boxes_are_one_line_and_exit_2(scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           box: str, label: str, words: str) -> None:
    code, _, err = run(capsys, "explain", str(scene), "--model", "digits_detector", "--method", "saliency",
                       "--box", box, "--target", label, "--out", str(tmp_path / "x.png"))
    assert code == 2 and words in err and err.count("\n") == 1


def test_predict_lists_a_detectors_boxes_and_draws_them(scene: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "boxes.png"
    code, text, _ = run(capsys, "predict", str(scene), "--model", "digits_detector", "--out", str(out),
                        "--json")
    (found,) = json.loads(text)
    assert code == 0 and Image.open(out).size == (128, 128)
    assert [d["label"] for d in found["detections"]] == ["7", "8", "3", "6"]
    assert found["detections"][3]["box"] == [38.1, 80.5, 57.0, 105.0]
