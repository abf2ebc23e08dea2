"""``explain --region / --reference`` and ``predict`` of a segmenter, on the shipped
``digits_segmenter`` and a held-out ``digit_scenes`` scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.data.digit_scenes import DigitScenes
from tests.cli.runner import run

MODEL = ("--model", "digits_segmenter")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Scene 1 (digits 4, 5, 9, 9; the 4 at x 46-69, y 68-92), a mask of its 4, scene 2."""
    folder = tmp_path_factory.mktemp("scenes")
    scenes = DigitScenes("heldout", 3)
    paths = []
    for i in (1, 2):
        path = folder / f"scene{i}.png"
        Image.fromarray((scenes.scene(i).image[0].numpy() * 255).astype(np.uint8)).save(path)
        paths.append(path)
    mask = folder / "four.png"
    Image.fromarray(((scenes.scene(1).mask == 4).numpy() * 255).astype(np.uint8)).save(mask)
    return paths[0], mask, paths[1]


def test_region_box_and_mask(capsys: pytest.CaptureFixture[str], scene: tuple[Path, Path, Path],
                             tmp_path: Path) -> None:
    image, mask, _ = scene
    code, out, err = run(capsys, "explain", str(image), *MODEL, "--method", "gradcam", "--region",
                         "46,68,69,92", "--target", "4", "--out", str(tmp_path / "a.png"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["explained"][0].startswith("region: class 4 '4', mean over 552 px of box (46, 68, 69, 92)")
    assert (tmp_path / "a.png").exists()
    code, out, err = run(capsys, "explain", str(image), *MODEL, "--method", "saliency", "--region",
                         str(mask), "--target", "4", "--reduce", "sum", "--out", str(tmp_path / "b.png"))
    assert code == 0, err
    assert "region: class 4 '4', sum over" in out and "of a mask" in out


def test_reference(capsys: pytest.CaptureFixture[str], scene: tuple[Path, Path, Path],
                   tmp_path: Path) -> None:
    image, _, other = scene
    code, out, err = run(capsys, "explain", str(image), *MODEL, "--method", "gradcam", "--reference",
                         str(other), "--out", str(tmp_path / "s.png"))
    assert code == 0, err
    assert f"similarity to reference image {other}: cos" in out


@pytest.mark.parametrize(("args", "words"), [
    (("--region", "46,68,269,92", "--target", "4"), "is not inside the 128x128 input"),
    (("--region", "1,2,3", "--target", "4"), "is not x0,y0,x1,y1"),
    (("--region", "46,68,69,92", "--target", "12"), "out of range: the model has 11 classes"),
    (("--region", "46,68,69,92", "--target", "zebra"), "not a class label"),
    (("--region", "46,68,69,92"), "needs --target CLASS"),
    (("--region", "SMALL", "--target", "4"), "does not match the 128x128 input"),
])
def test_bad_regions_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], scene: tuple[Path, Path, Path],
                                          tmp_path: Path, args: tuple[str, ...], words: str) -> None:
    small = tmp_path / "small.png"
    Image.new("L", (64, 64), 255).save(small)
    args = tuple(str(small) if a == "SMALL" else a for a in args)
    code, _, err = run(capsys, "explain", str(scene[0]), *MODEL, "--method", "gradcam", *args)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_predict_draws_the_segmentation(capsys: pytest.CaptureFixture[str], scene: tuple[Path, Path, Path],
                                        tmp_path: Path) -> None:
    out_png = tmp_path / "seg.png"
    code, out, err = run(capsys, "predict", str(scene[0]), *MODEL, "--out", str(out_png), "--json")
    assert code == 0, err
    (result,) = json.loads(out)
    shares = {c["label"]: c["share"] for c in result["classes"]}
    assert max(shares, key=shares.get) == "background" and "4" in shares
    assert abs(sum(shares.values()) - 1) < 1e-3
    picture = np.asarray(Image.open(out_png).convert("RGB")).astype(int)
    four = np.asarray(Image.open(scene[1])) > 0
    # the 4's pixels are tinted (not gray), the background is left as it was (black)
    assert (np.ptp(picture[four], axis=1) > 30).mean() > 0.8
    assert picture[:4, :4].max() == 0
