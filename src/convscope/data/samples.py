"""Named sample photos, usable anywhere an image is expected as ``"sample:NAME"``.

They come from scikit-image's ``skimage.data``, restricted to images shipped inside the
scikit-image wheel: other ``skimage.data`` images are fetched on first use through ``pooch``
from the network, which would make examples and tests fail offline. (The tests check that none
of these reaches for the network.) Photos with a clear ImageNet class record it, so examples
and tests can explain "the cat" without looking the index up.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadImage
from .arrays import from_array


@dataclass(frozen=True)
class Sample:
    """One named sample: which ``skimage.data`` function gives it, and what it shows."""

    skimage_name: str
    description: str
    imagenet_class: int | None = None
    part: int | None = None  # which array, for loaders that return several
    halves: tuple[str, ...] = ()
    """For a composite: the samples put side by side (``skimage_name`` is then unused)."""


SAMPLES: dict[str, Sample] = {
    "cat": Sample("chelsea", "Chelsea the tabby cat, 451x300 photo", 285),
    "coffee": Sample("coffee", "a cup of coffee on a saucer, 600x400 photo", 967),
    "astronaut": Sample("astronaut", "astronaut Eileen Collins, 512x512 portrait"),
    "rocket": Sample("rocket", "a SpaceX Falcon 9 rocket on its launch pad, 640x427 photo"),
    "motorcycle": Sample("stereo_motorcycle", "a motorcycle in a workshop (left image of a "
                         "stereo pair), 741x500 photo", part=0),
    "horse": Sample("horse", "a horse silhouette, black on white, 400x328 binary image"),
    "grass": Sample("grass", "texture: grass, 512x512 grayscale"),
    "gravel": Sample("gravel", "texture: gravel, 512x512 grayscale"),
    "brick": Sample("brick", "texture: brick wall, 512x512 grayscale"),
    "cat_and_coffee": Sample("", "the cat (left half, class 285) and the espresso (right half, "
                             "class 967) in one 224x224 image", halves=("cat", "coffee")),
}
"""The sample images by name. All ship with scikit-image (no download)."""

ALIASES: dict[str, str] = {"chelsea": "cat", "espresso": "coffee", "bike": "motorcycle"}
"""Other names accepted by :func:`load_sample` (scikit-image's own, and obvious synonyms)."""


def list_samples() -> dict[str, str]:
    """Sample name -> one-line description (with the ImageNet class where there is one)."""
    return {name: _describe(sample) for name, sample in SAMPLES.items()}


def load_sample(name: str) -> torch.Tensor:
    """The sample image ``name`` as a float32 (3, H, W) RGB tensor in [0, 1].

    Grayscale and binary samples (textures, horse) are repeated to three channels so every
    sample feeds an RGB model as it is. Unknown names raise :class:`BadImage` with a suggestion.
    """
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    sample = SAMPLES.get(key)
    if sample is None:
        raise BadImage(_unknown(name))
    if sample.halves:
        return _side_by_side([load_sample(half) for half in sample.halves])
    try:
        import skimage.data

        array = getattr(skimage.data, sample.skimage_name)()
    except (ImportError, OSError, ConnectionError, AttributeError) as err:
        raise BadImage(f"sample:{key} could not be loaded from scikit-image ({err}); reinstall "
                       "scikit-image") from None
    if sample.part is not None:
        array = array[sample.part]
    return from_array(np.asarray(array), f"sample:{key}")


def _side_by_side(images: list[torch.Tensor], size: int = 224) -> torch.Tensor:
    """A 3:4 portrait from the middle of each image, resized and joined left to right.

    The two-object picture lets one check that a map follows the target class: each object
    fills its own half, so "how much of the map lies on the left" is a number a test can read.
    """
    width = size // len(images)
    parts = []
    for img in images:
        h, w = img.shape[1:]
        crop = min(w, int(h * 0.75))
        img = img[:, :, (w - crop) // 2:(w - crop) // 2 + crop]
        parts.append(F.interpolate(img[None], size=(size, width), mode="bilinear", antialias=True)[0])
    return torch.cat(parts, 2).clamp(0, 1)


def _describe(sample: Sample) -> str:
    if sample.imagenet_class is None:
        return sample.description
    from ..model.labels import imagenet_labels

    label = imagenet_labels()[sample.imagenet_class]
    return f"{sample.description}; ImageNet class {sample.imagenet_class} '{label}'"


def _unknown(name: str) -> str:
    known = sorted(SAMPLES)
    close = difflib.get_close_matches(name.strip().lower(), known + sorted(ALIASES), n=1)
    guess = f"did you mean sample:{ALIASES.get(close[0], close[0])}? " if close else ""
    return f"unknown sample {name!r}; {guess}available: {', '.join(known)}"
