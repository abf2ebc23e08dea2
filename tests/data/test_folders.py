"""image_files / load_folder: sorting, skipping non-images with a warning, refusals."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from PIL import Image

from convscope.data import image_files, load_folder
from convscope.errors import BadArgument, BadImage


def _img(path: Path, color: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 3), color).save(path)
    return path


def test_mixed_folder(tmp_path: Path) -> None:
    _img(tmp_path / "b.png")
    _img(tmp_path / "a.JPG")
    _img(tmp_path / "c.webp", "blue")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "labels.csv").write_text("a,1")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    with pytest.warns(UserWarning, match=r"skipped 2 non-image file\(s\)") as record:
        loaded = load_folder(tmp_path)
    msg = str(record[0].message)
    assert "notes.txt" in msg and "labels.csv" in msg and ".DS_Store" not in msg
    assert [p.name for p, _ in loaded] == ["a.JPG", "b.png", "c.webp"]
    assert all(t.shape == (3, 3, 4) for _, t in loaded)


def test_no_warning_when_clean(tmp_path: Path) -> None:
    _img(tmp_path / "x.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [p.name for p in image_files(tmp_path)] == ["x.png"]


def test_recursive(tmp_path: Path) -> None:
    _img(tmp_path / "top.png")
    _img(tmp_path / "sub" / "deep.png")
    _img(tmp_path / ".hidden" / "secret.png")
    assert [p.name for p in image_files(tmp_path)] == ["top.png"]
    names = [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path, recursive=True)]
    assert names == ["sub/deep.png", "top.png"]


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(BadImage, match="holds no image files") as info:
        load_folder(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_only_non_images(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("x")
    with pytest.warns(UserWarning, match="readme.md"), pytest.raises(BadImage, match="no image"):
        image_files(tmp_path)


def test_missing_and_file(tmp_path: Path) -> None:
    with pytest.raises(BadImage, match="does not exist"):
        image_files(tmp_path / "gone")
    f = _img(tmp_path / "one.png")
    with pytest.raises(BadImage, match="load_image"):
        load_folder(f)


def test_corrupt_image_raise_or_skip(tmp_path: Path) -> None:
    _img(tmp_path / "good.png")
    (tmp_path / "bad.png").write_text("not really a png")
    with pytest.raises(BadImage, match=r"bad\.png"):
        load_folder(tmp_path)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\).*bad\.png"):
        loaded = load_folder(tmp_path, on_error="skip")
    assert [p.name for p, _ in loaded] == ["good.png"]
    with pytest.raises(BadArgument):
        load_folder(tmp_path, on_error="ignore")  # type: ignore[arg-type]
