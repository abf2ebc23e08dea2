"""Robust image loading: every source kind and file format becomes a (3, H, W) float tensor.

Everything the rest of convscope sees is float32 RGB in [0, 1], shape (3, H, W). This module is
the one gate where untrusted input is turned into that, so each format quirk is handled here
once and each failure is refused here with a :class:`~convscope.errors.BadImage` that names the
input and the fix, instead of surfacing later as a shape error or a silently wrong heatmap.

Choices, and why:

- **Transparency is composited on white** (RGBA, LA, palette with transparency, 4-channel
  arrays). Fully transparent pixels often hold arbitrary colour (black, or leftovers from an
  editor); dropping alpha would show the network that garbage, while white is what most pages
  and documents show behind a transparent image.
- **Bit depth is scaled, never clipped**: 16-bit PNG/TIFF values are divided by 65535, 8-bit by
  255, 1-bit images become 0/1. (PIL decodes 16-bit *colour* PNGs to 8 bits per channel: still
  scaled right, with 8-bit precision; 16-bit grayscale keeps its full precision.)
- **Floats are trusted only in [0, 1]**: NaN, inf or out-of-range values are refused, because
  clipping them would hide a normalization bug upstream (an ImageNet-normalized tensor passed in
  by mistake looks like an image with clipped shadows).
- **Animated files give their first frame**; **EXIF orientation is applied**, so a phone photo is
  the right way up, as every image viewer shows it.
- **Decompression bombs are refused** above ``max_pixels`` (default: PIL's own
  ``Image.MAX_IMAGE_PIXELS``); PIL's warning level counts as refusal too.
- Truncated files are refused: decoding is forced inside the ``try`` and
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never switched on here.
"""

from __future__ import annotations

import io
import os
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import BadImage, warn
from .arrays import from_array, from_tensor
from .samples import load_sample

ImageSource = (str | os.PathLike | bytes | bytearray | memoryview | IO[bytes] | Image.Image
               | np.ndarray | torch.Tensor)
"""Anything :func:`load_image` accepts."""

SAMPLE_PREFIX = "sample:"
_URL_PREFIXES = ("http://", "https://", "ftp://", "s3://", "gs://")
_PIL_LIMIT_LOCK = threading.Lock()


def load_image(source: ImageSource, *, max_pixels: int | None = None) -> torch.Tensor:
    """Load one image as a float32 (3, H, W) RGB tensor in [0, 1].

    ``source`` may be a path, ``"sample:NAME"`` (see :func:`convscope.data.list_samples`), raw
    encoded bytes, a binary file-like object, a PIL image, a numpy array (H, W[, 1|2|3|4]) of
    uint8 / uint16 / bool / float in [0, 1], or a torch tensor (H, W) or (1|2|3|4, H, W) of
    uint8 / uint16 / bool / float in [0, 1]. Tensors keep their device.

    ``max_pixels`` bounds width * height of encoded images (a decompression-bomb guard); None
    means PIL's ``Image.MAX_IMAGE_PIXELS``. Raise it for a trusted, very large image.

    Raises :class:`BadImage` with a one-line message naming the source and what to do.
    """
    if isinstance(source, torch.Tensor):
        return from_tensor(source, "torch tensor")
    if isinstance(source, np.ndarray):
        return from_array(source, "numpy array")
    if isinstance(source, Image.Image):
        name = f"PIL image {getattr(source, 'filename', '') or ''}".strip()
        return _decode(lambda: source, name, max_pixels, opened_by_us=False)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = f"image bytes ({len(data)} bytes)"
        if not data:
            raise BadImage("image bytes are empty (0 bytes); pass the encoded file contents")
        return _decode_bytes(data, name, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if isinstance(text, str) and text.startswith(SAMPLE_PREFIX):
            return load_sample(text[len(SAMPLE_PREFIX):])
        return _load_path(os.fsdecode(text), max_pixels)
    if hasattr(source, "read"):
        return _load_filelike(source, max_pixels)
    raise BadImage(
        f"cannot load an image from a {type(source).__name__}; pass a path, 'sample:NAME', "
        "bytes, a binary file object, a PIL image, a numpy array or a torch tensor"
    )


def load_images(sources: Sequence[ImageSource] | ImageSource, *,
                max_pixels: int | None = None) -> list[torch.Tensor]:
    """Load several images (each as :func:`load_image`); a single source gives a list of one.

    Images keep their own sizes, so the result is a list; ``Model.preprocess`` resizes and stacks.
    """
    if isinstance(sources, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image,
                            np.ndarray, torch.Tensor)) or hasattr(sources, "read"):
        sources = [sources]  # type: ignore[list-item]
    items = list(sources)  # type: ignore[arg-type]
    if not items:
        raise BadImage("no images given; pass at least one path, sample name or array")
    return [load_image(s, max_pixels=max_pixels) for s in items]


def _load_path(shown: str, max_pixels: int | None) -> torch.Tensor:
    """Check the path (so the message says *what* is wrong with it), then decode the file."""
    if shown.lower().startswith(_URL_PREFIXES):
        raise BadImage(f"'{shown}' is a URL; download the image and pass the local file path")
    path = Path(shown).expanduser()
    if not path.exists():
        raise BadImage(f"image file '{shown}' does not exist; check the path (or use sample:NAME)")
    if path.is_dir():
        raise BadImage(f"'{shown}' is a folder, not an image file; use load_folder() to read "
                       "every image in it")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BadImage(f"cannot read image file '{shown}' ({_one_line(err)}); check its "
                       "permissions") from None
    return load_file_bytes(data, shown, max_pixels=max_pixels)


def load_file_bytes(data: bytes, name: str, *, max_pixels: int | None = None) -> torch.Tensor:
    """The contents of an image file called ``name`` (an upload), refused exactly as
    :func:`load_image` refuses the file at that path, with the same one-line message."""
    if not data:
        raise BadImage(f"image file '{name}' is empty (0 bytes); re-save or re-download it")
    return _decode_bytes(data, f"image file '{name}'", max_pixels)


def _load_filelike(stream: Any, max_pixels: int | None) -> torch.Tensor:
    """Read the whole stream first, so non-seekable streams (sockets, stdin) work too."""
    name = f"file object '{getattr(stream, 'name', '') or type(stream).__name__}'"
    try:
        data = stream.read()
    except (OSError, ValueError) as err:
        raise BadImage(f"cannot read {name} ({_one_line(err)}); open it in binary mode") from None
    if isinstance(data, str):
        raise BadImage(f"{name} is open in text mode; open it with 'rb'")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BadImage(f"{name} returned {type(data).__name__} from read(); expected bytes")
    if not data:
        raise BadImage(f"{name} is empty (0 bytes left to read); pass the image contents")
    return _decode_bytes(bytes(data), name, max_pixels)


def _decode_bytes(data: bytes, name: str, max_pixels: int | None) -> torch.Tensor:
    def open_image() -> Image.Image:
        return Image.open(io.BytesIO(data))

    return _decode(open_image, name, max_pixels)


def _decode(open_image: Any, name: str, max_pixels: int | None, *,
            opened_by_us: bool = True) -> torch.Tensor:
    """Open, bound, fully decode and orient an image; any decoder failure becomes BadImage.

    A PIL image handed in by the caller (``opened_by_us=False``) keeps the frame the caller
    selected and skips the pixel limit: PIL already applied it when the caller opened it.
    """
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    try:
        with warnings.catch_warnings(), _pil_limit_at_least(limit):
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = open_image()
            _check_pixels(img, name, limit if opened_by_us else None)
            if opened_by_us and getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP/APNG, multi-page TIFF: the first frame
            img.load()  # force decoding here, where truncation is caught
        img = _orient(img, name)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImage(_too_large(name, _claimed_pixels(err), limit)) from None
    except Image.UnidentifiedImageError:
        raise BadImage(f"{name} is not an image format PIL can read; pass a PNG, JPEG, WebP, "
                       "GIF, TIFF or BMP file") from None
    except Exception as err:  # decoders raise OSError, SyntaxError, ValueError, zlib.error, ...
        raise BadImage(f"{name} is truncated or corrupt ({_one_line(err)}); re-save or "
                       "re-download it") from None
    return from_array(_pil_to_array(img, name), name)


@contextmanager
def _pil_limit_at_least(limit: int | None) -> Iterator[None]:
    """Let PIL open images up to ``limit`` pixels when the caller raised ``max_pixels``.

    PIL checks its module-wide ``MAX_IMAGE_PIXELS`` inside ``Image.open``; a caller who opts into
    bigger images needs that check lifted for the one call (restored in ``finally``). The common
    case, a limit at or below PIL's, changes nothing.
    """
    current = Image.MAX_IMAGE_PIXELS
    if limit is None or current is None or limit <= current:
        yield
        return
    with _PIL_LIMIT_LOCK:
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = current


def _check_pixels(img: Image.Image, name: str, limit: int | None) -> None:
    """Refuse before decoding: the header's size alone is enough to know."""
    width, height = img.size
    if width <= 0 or height <= 0:
        raise BadImage(f"{name} has size {width}x{height}; it contains no pixels")
    if limit is not None and width * height > limit:
        raise BadImage(_too_large(f"{name} ({width}x{height})", width * height, limit))


def _too_large(name: str, pixels: int | None, limit: int | None) -> str:
    count = f"{pixels:,} pixels" if pixels else "more pixels than allowed"
    allow = f"max_pixels={pixels}" if pixels else "a larger max_pixels="
    return (f"{name} has {count}, above the limit of {limit or Image.MAX_IMAGE_PIXELS:,} (a guard "
            f"against decompression bombs); if you trust it, pass {allow}")


def _claimed_pixels(err: BaseException) -> int | None:
    """The pixel count in PIL's decompression-bomb message ("Image size (N pixels) ...")."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    return int(found.group(1)) if found else None


def _orient(img: Image.Image, name: str) -> Image.Image:
    """Apply the EXIF orientation; an unreadable EXIF block is worth a warning, not a refusal."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception as err:  # malformed EXIF raises anything from KeyError to struct.error
        warn(f"{name}: EXIF orientation unreadable ({_one_line(err)}); loaded as "
             "stored", UserWarning)
        return img


def _pil_to_array(img: Image.Image, name: str) -> np.ndarray:
    """A decoded PIL image as an (H, W[, C]) array whose dtype says its scale (see arrays.py)."""
    mode = img.mode
    if mode == "1":
        return np.asarray(img.convert("L")) > 127  # bool: 0 / 1
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)  # also normalizes big-endian I;16B
    if mode == "I":
        values = np.asarray(img)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise BadImage(f"{name} is a 32-bit integer image with values outside 0..65535; "
                           "convert it to 8- or 16-bit")
        return values.astype(np.uint16)
    if mode == "F":
        return np.asarray(img, dtype=np.float32)
    if mode in ("L", "RGB", "RGBA", "LA"):
        return np.asarray(img)
    if mode in ("P", "PA"):
        keep_alpha = mode == "PA" or "transparency" in img.info
        return np.asarray(img.convert("RGBA" if keep_alpha else "RGB"))
    if mode in ("La", "RGBa"):  # premultiplied alpha
        return np.asarray(img.convert(mode.upper()))
    try:  # CMYK (JPEG), YCbCr, LAB, HSV, RGBX, ...
        return np.asarray(img.convert("RGB"))
    except (ValueError, OSError) as err:
        raise BadImage(f"{name} has pixel mode {mode!r} which cannot become RGB "
                       f"({_one_line(err)}); convert it to RGB first") from None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__
