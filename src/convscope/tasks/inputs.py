"""What every task accepts as images: paths, ``sample:NAME``, bytes, tensors, or lists of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from ..data import load_image
from ..model import Model

ImageSource = str | Path | bytes | Tensor
Images = ImageSource | Sequence[ImageSource]


def as_images(images: Images) -> list[Tensor]:
    """Any image source, or a list of them, as a list of (3, H, W) tensors in [0, 1]."""
    if isinstance(images, Tensor) and images.ndim == 4:
        return list(images)
    if isinstance(images, (str, Path, bytes, Tensor)):
        return [load_image(images)]
    return [load_image(img) for img in images]


def model_inputs(model: Model, images: Images) -> Tensor:
    """A 4-D tensor is taken as model input already (``model.preprocess`` output); anything
    else is loaded as images and preprocessed."""
    if isinstance(images, Tensor) and images.ndim == 4:
        return images.to(model.device)
    return model.preprocess(as_images(images))


def stem(source: ImageSource) -> str:
    """A short name for output files: ``sample:cat`` -> ``cat``, ``dir/photo.jpg`` -> ``photo``."""
    if isinstance(source, str) and source.startswith("sample:"):
        return source.split(":", 1)[1]
    return Path(str(source)).stem if isinstance(source, (str, Path)) else "image"
