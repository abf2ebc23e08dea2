"""Loading videos: a folder of frames or an animated image, every frame, refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from convscope.data.video import load_video
from convscope.errors import BadImage


def _frames(count: int, size: tuple[int, int] = (6, 5)) -> list[Image.Image]:
    """Frames whose red value is 20 * their index: each frame's identity is in its pixels."""
    return [Image.new("RGB", size, (20 * i, 100, 7)) for i in range(count)]


def test_a_folder_is_read_in_name_order(tmp_path: Path) -> None:
    for i, frame in reversed(list(enumerate(_frames(4)))):
        frame.save(tmp_path / f"f{i:02d}.png")
    clip = load_video(tmp_path)
    assert clip.shape == (4, 3, 5, 6)
    assert torch.allclose(clip[:, 0, 0, 0] * 255, torch.tensor([0.0, 20, 40, 60]))


@pytest.mark.parametrize("suffix", ["gif", "webp", "png"])
def test_every_frame_of_an_animation(tmp_path: Path, suffix: str) -> None:
    first, *rest = _frames(5)
    path = tmp_path / f"clip.{suffix}"
    extra = {"lossless": True} if suffix == "webp" else {}
    first.save(path, save_all=True, append_images=rest, duration=50, **extra)
    clip = load_video(path)
    assert clip.shape == (5, 3, 5, 6)
    assert torch.allclose(clip[:, 0, 2, 2] * 255, torch.tensor([0.0, 20, 40, 60, 80]), atol=1.0)


def test_a_still_image_is_one_frame(tmp_path: Path) -> None:
    _frames(1)[0].save(tmp_path / "still.png")
    assert load_video(tmp_path / "still.png").shape == (1, 3, 5, 6)


def test_bad_videos_are_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    _frames(1)[0].save(folder / "a.png")
    _frames(1, (7, 7))[0].save(folder / "b.png")
    cases = {folder: "b.png is 7x7 pixels but a.png is 5x6", tmp_path / "none": "does not exist"}
    (tmp_path / "junk.gif").write_bytes(b"GIF89a broken")
    cases[tmp_path / "junk.gif"] = "is not an image format PIL can read"
    for source, needle in cases.items():
        with pytest.raises(BadImage, match=needle) as err:
            load_video(source)
        assert "\n" not in str(err.value)
    first, *rest = _frames(4)
    first.save(tmp_path / "long.gif", save_all=True, append_images=rest)
    with pytest.raises(BadImage, match="has 4 frames, more than 3"):
        load_video(tmp_path / "long.gif", max_frames=3)
