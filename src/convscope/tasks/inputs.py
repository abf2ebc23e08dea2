"""What every task accepts as images: paths, ``sample:NAME``, bytes, tensors, or lists of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..data import load_image
from ..data.video import load_video
from ..errors import BadImage
from ..model import Model
from ..model.structured import conv_ranks

ImageSource = str | Path | bytes | Tensor
Images = ImageSource | Sequence[ImageSource]


def as_images(images: Images) -> list[Tensor]:
    """Any image source, or a list of them, as a list of (3, H, W) tensors in [0, 1]."""
    if isinstance(images, Tensor) and images.ndim == 4:
        return list(images)
    if isinstance(images, (str, Path, bytes, Tensor)):
        return [load_image(images)]
    return [load_image(img) for img in images]


def _looks_like_image(x: object) -> bool:
    """One image as ``load_image`` gives it: (1 or 3, H, W) with values in [0, 1]."""
    if not (isinstance(x, Tensor) and x.ndim == 3 and x.shape[0] in (1, 3) and x.is_floating_point()):
        return False
    if x.numel() == 0:
        return True
    low, high = torch.aminmax(x)  # one pass (NaN fails both comparisons)
    return bool(low >= 0) and bool(high <= 1)


def is_model_input(images: object) -> bool:
    """Whether ``images`` is model input already: a (B, C, H, W) batch (``model.preprocess``
    output), a (B, C, T, H, W) clip batch (``model.preprocess_clips``), a (B, F) table or
    (B, C, L) signal, or a tuple of tensors (several inputs); a [0, 1] image tensor (3, H, W) is
    an image, like paths and ``sample:`` names."""
    if isinstance(images, tuple) and images and all(isinstance(i, Tensor) for i in images):
        return True
    return isinstance(images, Tensor) and images.ndim in (2, 3, 4, 5) and not _looks_like_image(images)


def takes_clips(model: Model) -> bool:
    """Whether the model explains videos: it declares a clip length, or it is a 3-D CNN (which
    is then refused until it does: "auto" and the frame checks need one)."""
    if model.frames is not None:
        return True
    if conv_ranks(model) == {3}:
        raise BadImage(f"model {model.name!r} is a 3-D (video) model: give its clip length, --frames T "
                       "(Preprocess(frames=T) in Python), the fewest frames it takes")
    return False


def as_clips(videos: Images) -> list[Tensor]:
    """Videos (a folder of frames or an animated GIF / WebP / PNG path, or a (T, 3, H, W)
    tensor in [0, 1]), or a list of them, as a list of (T, 3, H, W) clips."""
    items = [videos] if isinstance(videos, (str, Path, bytes, Tensor)) else list(videos)
    clips = []
    for item in items:
        if isinstance(item, Tensor):
            clips.append(item)
        elif isinstance(item, (str, Path)):
            clips.append(load_video(item))
        else:
            raise BadImage(f"a video is a folder of frames, an animated image path or a (T, 3, H, W) "
                           f"tensor, not {type(item).__name__}")
    return clips


def model_inputs(model: Model, images: Images | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
    """What the model runs on: model input as it is (:func:`is_model_input`), on the model's
    device; anything else is loaded as images and preprocessed."""
    if isinstance(images, tuple) and is_model_input(images):
        return on_device(model, images)
    if isinstance(images, Tensor) and is_model_input(images) and not (model.frames and images.ndim == 4):
        return on_device(model, images)
    if takes_clips(model):  # a video model: each source is a clip
        return model.preprocess_clips(as_clips(images))  # type: ignore[arg-type]
    return model.preprocess(as_images(images))  # type: ignore[arg-type]


def on_device(model: Model, inputs: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
    """Model input (:func:`is_model_input`, already checked) on the model's device."""
    device = model.device
    return inputs.to(device) if isinstance(inputs, Tensor) else tuple(i.to(device) for i in inputs)


def stem(source: ImageSource) -> str:
    """A short name for output files: ``sample:cat`` -> ``cat``, ``dir/photo.jpg`` -> ``photo``."""
    if isinstance(source, str) and source.startswith("sample:"):
        return source.split(":", 1)[1]
    return Path(str(source)).stem if isinstance(source, (str, Path)) else "image"
