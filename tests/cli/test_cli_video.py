"""convscope explain VIDEO: a folder of frames or an animated GIF, explained by a 3-D model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.cli.main import main
from tests.video_nets import FRAMES, SIDE, blob_clip

MODEL = ["--model", f"{Path(__file__).parents[1] / 'video_nets.py'}:MotionNet", "--frames", "2",
         "--input-size", str(SIDE), "--mean", "0,0,0", "--std", "1,1,1"]


def _frames() -> list[Image.Image]:
    clip = (blob_clip()[0] * 255).byte()  # (3, T, H, W)
    return [Image.fromarray(clip[:, t].permute(1, 2, 0).numpy()) for t in range(FRAMES)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "walk"
    root.mkdir()
    for i, frame in enumerate(_frames()):
        frame.save(root / f"frame_{i:02d}.png")
    return root


@pytest.fixture
def gif(tmp_path: Path) -> Path:
    first, *rest = _frames()
    path = tmp_path / "walk.gif"  # Pillow merges identical consecutive frames: 7 of the 8 remain
    first.save(path, save_all=True, append_images=rest, duration=100, loop=0)
    return path


def test_explain_video_folder_writes_strip_animation_and_raw(folder: Path, tmp_path: Path, capsys) -> None:
    strip, anim, raw = tmp_path / "s.png", tmp_path / "a.webp", tmp_path / "m.npy"
    code = main(["explain", str(folder), "--method", "gradcam", "--target", "0", "--out", str(strip),
                 "--animation", str(anim), "--raw", str(raw), "--json", *MODEL])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["shape"] == [1, 1, FRAMES, SIDE, SIDE] and summary["layer"] == "relu"
    assert summary["raw_shape"] == [1, 1, FRAMES - 1, SIDE, SIDE]
    with Image.open(strip) as picture:
        assert picture.width > 2 * picture.height
    with Image.open(anim) as animated:
        assert animated.n_frames == FRAMES
    assert np.load(raw).shape == (FRAMES, SIDE, SIDE)


def test_explain_gif_with_space_time_occlusion(gif: Path, tmp_path: Path, capsys) -> None:
    code = main(["explain", str(gif), "--method", "occlusion", "-o", "window=2,4,4", "--target", "0",
                 "--out", str(tmp_path / "o.png"), "--animation", str(tmp_path / "o.gif"), *MODEL])
    assert code == 0 and "animation:" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "needle"), [
    (["--frames", "9"], "video with 8 frames: model"),
    (["--method", "occlusion", "-o", "window=9,4,4"], "fewer than the window's 9"),
    (["--method", "lime"], "not the (B, C, T, H, W) clips"),
    (["--box"], "a video's map has no one box"),
    (["--animation", "x.png"], "name a .gif or .webp file"),
])
def test_explain_video_errors(folder: Path, tmp_path: Path, capsys, argv: list[str], needle: str) -> None:
    method = [] if "--method" in argv else ["--method", "gradcam"]
    code = main(["explain", str(folder), "--out", str(tmp_path / "x.png"), *MODEL, *method, *argv])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_a_3d_model_without_frames_is_told_to_give_them(folder: Path, tmp_path: Path, capsys) -> None:
    argv = [a for a in MODEL if a not in ("--frames", "2")]
    code = main(["explain", str(folder), "--method", "gradcam", "--out", str(tmp_path / "x.png"), *argv])
    assert code == 2 and "--frames T" in capsys.readouterr().err
