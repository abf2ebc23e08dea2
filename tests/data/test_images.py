"""load_image on files, bytes and streams: every supported format, and every refusal.

All images are written small with PIL into tmp_path; the decompression-bomb cases either lower
the limit or forge a PNG header, so nothing large is ever allocated.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from convscope.data import load_image, load_images
from convscope.errors import BadImage


def _save(img: Image.Image, path: Path, **kw: object) -> Path:
    img.save(path, **kw)
    return path


def _check(t: torch.Tensor, h: int, w: int) -> None:
    assert t.dtype == torch.float32 and t.shape == (3, h, w)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def _refused(source: object, *names: str, **kw: object) -> str:
    """Assert BadImage whose one-line message names each of ``names``; return the message."""
    with pytest.raises(BadImage) as info:
        load_image(source, **kw)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "\n" not in msg
    for name in names:
        assert name in msg, msg
    return msg


# ---------------------------------------------------------------- formats handled correctly


def test_rgb_png_exact(tmp_path: Path) -> None:
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = load_image(_save(Image.fromarray(a), tmp_path / "rgb.png"))
    _check(t, 5, 7)
    assert torch.equal(t, torch.from_numpy(a).permute(2, 0, 1).float() / 255)


def test_str_path_and_pathlike(tmp_path: Path) -> None:
    p = _save(Image.new("RGB", (4, 3), (255, 0, 0)), tmp_path / "red.png")
    assert torch.equal(load_image(str(p)), load_image(p))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_gray_scaled_not_clipped(tmp_path: Path, fmt: str) -> None:
    a = np.array([[0, 1000, 30000], [40000, 65535, 12345]], dtype=np.uint16)
    t = load_image(_save(Image.fromarray(a), tmp_path / f"g16.{fmt.lower()}", format=fmt))
    _check(t, 2, 3)
    assert torch.allclose(t[0], torch.from_numpy(a.astype(np.float32) / 65535), atol=1e-6)
    assert torch.equal(t[0], t[1]) and torch.equal(t[0], t[2])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_16bit_rgb_png_scaled() -> None:
    """PIL cannot write 48-bit PNGs, so build one by hand; PIL reads it at 8-bit precision."""
    px = np.array([[[65535, 32768, 0], [1000, 50000, 65535]]], dtype=">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in px)
    png = (b"\x89PNG\r\n\x1a\n"
           + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0))
           + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))
    t = load_image(png)
    expected = torch.from_numpy(px.astype(np.float32) / 65535).permute(2, 0, 1)
    assert torch.allclose(t, expected, atol=1 / 255)


def test_grayscale_l(tmp_path: Path) -> None:
    t = load_image(_save(Image.new("L", (3, 2), 51), tmp_path / "l.png"))
    assert torch.allclose(t, torch.full((3, 2, 3), 0.2))


def test_float_tiff(tmp_path: Path) -> None:
    a = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    t = load_image(_save(Image.fromarray(a), tmp_path / "f.tif"))
    assert torch.allclose(t[0], torch.from_numpy(a))


def test_float_tiff_out_of_range_refused(tmp_path: Path) -> None:
    p = _save(Image.fromarray(np.full((3, 4), 7.5, np.float32)), tmp_path / "hdr.tif")
    _refused(p, "hdr.tif", "[0, 1]")


def test_int32_pil_image() -> None:
    t = load_image(Image.fromarray(np.full((2, 2), 65535, np.int32)))
    assert torch.allclose(t, torch.ones(3, 2, 2))
    _refused(Image.fromarray(np.full((2, 2), 70000, np.int32)), "PIL image", "0..65535")


def test_cmyk_jpeg(tmp_path: Path) -> None:
    p = _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")
    assert Image.open(p).mode == "CMYK"
    t = load_image(p)
    _check(t, 16, 16)
    assert t[0].mean() > 0.9 and t[1].mean() < 0.1 and t[2].mean() < 0.1  # red


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    img.putpixel((1, 0), (255, 0, 0, 255))
    t = load_image(_save(img, tmp_path / "rgba.png"))
    assert torch.allclose(t[:, 0, 0], torch.ones(3))  # transparent -> white
    assert torch.allclose(t[:, 0, 1], torch.tensor([1.0, 0.0, 0.0]))


def test_la(tmp_path: Path) -> None:
    a = np.array([[[100, 0], [100, 255]]], dtype=np.uint8)
    t = load_image(_save(Image.fromarray(a, mode="LA"), tmp_path / "la.png"))
    assert torch.allclose(t[:, 0, 0], torch.ones(3))
    assert torch.allclose(t[:, 0, 1], torch.full((3,), 100 / 255))


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255])
    img.putpixel((1, 0), 1)
    p = _save(img, tmp_path / "pal.png", transparency=1)
    assert Image.open(p).mode == "P"
    t = load_image(p)
    assert torch.allclose(t[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(t[:, 0, 1], torch.ones(3))  # the transparent blue -> white


def test_palette_opaque(tmp_path: Path) -> None:
    img = Image.new("P", (1, 1))
    img.putpalette([0, 0, 255])
    t = load_image(_save(img, tmp_path / "pal.gif"))
    assert torch.allclose(t[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))


def test_one_bit(tmp_path: Path) -> None:
    img = Image.new("1", (3, 2), 0)
    img.putpixel((1, 1), 1)
    t = load_image(_save(img, tmp_path / "bits.png"))
    expected = torch.zeros(2, 3)
    expected[1, 1] = 1
    assert torch.equal(t, expected.expand(3, -1, -1))


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_first_frame(tmp_path: Path, fmt: str) -> None:
    frames = [Image.new("RGB", (8, 6), c) for c in ("red", "lime", "blue")]
    p = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(p, format=fmt, save_all=True, append_images=frames[1:], lossless=True)
    assert Image.open(p).n_frames == 3
    t = load_image(p)
    _check(t, 6, 8)
    assert torch.allclose(t.mean((1, 2)), torch.tensor([1.0, 0.0, 0.0]), atol=0.02)


def test_pil_image_keeps_chosen_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    p = tmp_path / "two.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    with Image.open(p) as img:
        img.seek(1)
        t = load_image(img)
    assert torch.allclose(t.mean((1, 2)), torch.tensor([0.0, 0.0, 1.0]), atol=0.02)


def test_multipage_tiff_first_page(tmp_path: Path) -> None:
    pages = [Image.new("RGB", (4, 4), c) for c in ("blue", "red")]
    p = tmp_path / "pages.tif"
    pages[0].save(p, save_all=True, append_images=pages[1:])
    assert torch.allclose(load_image(p).mean((1, 2)), torch.tensor([0.0, 0.0, 1.0]))


def test_exif_orientation_applied(tmp_path: Path) -> None:
    stored = np.zeros((32, 64, 3), dtype=np.uint8)  # H=32, W=64: blue, top-left quadrant red
    stored[..., 2] = 255
    stored[:16, :32] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    p = _save(Image.fromarray(stored), tmp_path / "phone.jpg", exif=exif, quality=95)
    t = load_image(p)
    _check(t, 64, 32)  # portrait now
    red, blue = torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0])
    assert torch.allclose(t[:, 8, 24], red, atol=0.1)  # stored top-left is now top-right
    assert torch.allclose(t[:, 8, 8], blue, atol=0.1)
    assert torch.allclose(t[:, 48, 24], blue, atol=0.1)
    expected = torch.from_numpy(np.rot90(stored, k=-1).copy()).permute(2, 0, 1) / 255
    assert (t - expected).abs().mean() < 0.03


@pytest.mark.parametrize("fmt", ["BMP", "WEBP", "PPM", "TGA", "JPEG"])
def test_other_formats(tmp_path: Path, fmt: str) -> None:
    p = _save(Image.new("RGB", (5, 4), (0, 255, 0)), tmp_path / f"g.{fmt.lower()}", format=fmt)
    t = load_image(p)
    _check(t, 4, 5)
    assert t[1].mean() > 0.95


def test_bytes_and_file_like(tmp_path: Path) -> None:
    p = _save(Image.new("RGB", (3, 2), (0, 0, 255)), tmp_path / "b.png")
    expected = load_image(p)
    data = p.read_bytes()
    assert torch.equal(load_image(data), expected)
    assert torch.equal(load_image(bytearray(data)), expected)
    assert torch.equal(load_image(memoryview(data)), expected)
    with open(p, "rb") as f:
        assert torch.equal(load_image(f), expected)
    assert torch.equal(load_image(io.BytesIO(data)), expected)


def test_non_seekable_stream(tmp_path: Path) -> None:
    class Stream:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self, n: int = -1) -> bytes:
            out, self.data = self.data, b""
            return out

    data = _save(Image.new("RGB", (3, 2), "red"), tmp_path / "s.png").read_bytes()
    _check(load_image(Stream(data)), 2, 3)


def test_pil_image_input_not_modified() -> None:
    img = Image.new("RGBA", (3, 2), (0, 0, 0, 0))
    t = load_image(img)
    assert torch.allclose(t, torch.ones(3, 2, 3)) and img.mode == "RGBA"


def test_load_images(tmp_path: Path) -> None:
    p = _save(Image.new("RGB", (3, 2)), tmp_path / "a.png")
    out = load_images([p, str(p), np.zeros((4, 4), np.uint8)])
    assert [tuple(t.shape) for t in out] == [(3, 2, 3), (3, 2, 3), (3, 4, 4)]
    assert len(load_images(p)) == 1
    with pytest.raises(BadImage, match="no images"):
        load_images([])


def test_truncated_flag_left_off(tmp_path: Path) -> None:
    load_image(_save(Image.new("RGB", (3, 2)), tmp_path / "a.jpg"))
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


# ---------------------------------------------------------------- refused clearly


def test_missing_file(tmp_path: Path) -> None:
    _refused(tmp_path / "nope.png", "nope.png", "does not exist")


def test_directory(tmp_path: Path) -> None:
    _refused(tmp_path, str(tmp_path), "load_folder")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    _refused(p, "empty.png", "0 bytes")


def test_empty_bytes() -> None:
    _refused(b"", "bytes", "empty")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_truncated(tmp_path: Path, fmt: str) -> None:
    a = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = _save(Image.fromarray(a), tmp_path / f"whole.{fmt.lower()}", format=fmt)
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    _refused(cut, "cut.", "truncated or corrupt")


def test_text_file(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\n")
    _refused(p, "notes.jpg", "not an image")


def test_text_mode_stream(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("hello")
    with open(p) as f:
        _refused(f, "t.txt", "'rb'")


def test_url_refused() -> None:
    _refused("https://example.com/cat.jpg", "https://example.com/cat.jpg", "download")


def test_unsupported_type() -> None:
    _refused(42, "int")


def test_bomb_lowered_max_pixels(tmp_path: Path) -> None:
    p = _save(Image.new("RGB", (100, 100)), tmp_path / "big.png")
    _refused(p, "big.png", "10,000 pixels", "max_pixels=", max_pixels=5000)
    _check(load_image(p, max_pixels=10_000), 100, 100)


def test_bomb_pil_warning_level_is_refused(tmp_path: Path, monkeypatch) -> None:
    p = _save(Image.new("RGB", (100, 100)), tmp_path / "warn.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # 10,000 px: PIL's warning band
    _refused(p, "warn.png", "max_pixels")


def test_bomb_raising_max_pixels_lifts_pil_limit(tmp_path: Path, monkeypatch) -> None:
    p = _save(Image.new("RGB", (100, 100)), tmp_path / "ok.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10x smaller: PIL's error band
    _refused(p, "ok.png", "max_pixels")
    _check(load_image(p, max_pixels=20_000), 100, 100)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored


@pytest.mark.parametrize("side", [12_000, 100_000])  # PIL's warning band, then its error band
def test_bomb_forged_header(tmp_path: Path, side: int) -> None:
    """A tiny PNG whose header claims side x side pixels: nothing is ever allocated."""
    p = tmp_path / "bomb.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n"
                  + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                  + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + _png_chunk(b"IEND", b""))
    _refused(p, "bomb.png", "max_pixels")


def test_zero_sized_pil_image() -> None:
    _refused(Image.new("RGB", (0, 5)), "PIL image", "no pixels")


@pytest.mark.parametrize("data", [b"", b"this is not a picture\n", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0"])
def test_file_contents_are_refused_as_the_file_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  data: bytes) -> None:
    """An upload's bytes and its name get the very line the file at that path gets."""
    from convscope.data.images import load_file_bytes

    monkeypatch.chdir(tmp_path)
    Path("upload.png").write_bytes(data)
    with pytest.raises(BadImage) as info:
        load_file_bytes(data, "upload.png")
    assert str(info.value) == _refused("upload.png", "image file 'upload.png'")
    assert torch.equal(load_file_bytes(_png_bytes(), "ok.png"), load_image(_png_bytes()))


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(buffer, "PNG")
    return buffer.getvalue()
