"""Video clips in: a folder of frames or an animated image (GIF, WebP, APNG) -> (T, 3, H, W).

No video codec is needed: Pillow reads every frame of an animated file, and a folder's image
files (sorted by name, as frame_0001.png ... are) are its frames. Every frame is decoded and
refused like an image (:mod:`.images`); frames of different sizes are refused in one line.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image

from ..errors import BadImage
from .folders import image_files
from .images import _decode, load_file_bytes, load_image

MAX_FRAMES = 1024
"""Most frames read from one source (a longer clip is refused: it would not fit a model's
batch anyway, and a crafted file could claim millions)."""


def load_video(source: str | Path, *, max_frames: int = MAX_FRAMES) -> torch.Tensor:
    """The frames of a video, (T, 3, H, W) float in [0, 1]: every image file of a folder, in
    name order, or every frame of an animated GIF / WebP / PNG (a still image is one frame)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise BadImage(f"video '{source}' does not exist; give a folder of frames or an animated "
                       "GIF / WebP / PNG file")
    if path.is_dir():
        files = image_files(path)
        if len(files) > max_frames:
            raise BadImage(f"video folder '{source}' holds {len(files)} frames, more than {max_frames}; "
                           "give a shorter clip")
        frames = [load_image(f) for f in files]
        names = [f.name for f in files]
    else:
        frames = _animation_frames(path, str(source), max_frames)
        names = [f"frame {i}" for i in range(len(frames))]
    first = tuple(frames[0].shape[-2:])
    odd = next((i for i, f in enumerate(frames) if tuple(f.shape[-2:]) != first), None)
    if odd is not None:
        size = "x".join(map(str, frames[odd].shape[-2:]))
        raise BadImage(f"video '{source}': {names[odd]} is {size} pixels but {names[0]} is "
                       f"{'x'.join(map(str, first))}; give frames of one size")
    return torch.stack(frames)


def _animation_frames(path: Path, shown: str, max_frames: int) -> list[torch.Tensor]:
    """Every frame of an animated image file (its first frame checked as :func:`load_image`
    checks an image: format, truncation, pixel limits)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BadImage(f"cannot read video file '{shown}' ({err}); check its permissions") from None
    frames = [load_file_bytes(data, shown)]
    with Image.open(io.BytesIO(data)) as img:
        count = int(getattr(img, "n_frames", 1))
        if count > max_frames:
            raise BadImage(f"video file '{shown}' has {count} frames, more than {max_frames}; give a "
                           "shorter clip")
        for i in range(1, count):
            img.seek(i)
            frames.append(_decode(lambda: img, f"frame {i} of video file '{shown}'", None,
                                  opened_by_us=False))
    return frames
