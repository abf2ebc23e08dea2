"""Task-level functions that join loading, model and methods for the user.

These are the verbs of the Python API that the CLI and the web app call too, so every surface
gives the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import Tensor

from .data import load_image
from .errors import BadArgument
from .methods.predict import top_k
from .model import Model

ImageSource = str | Path | bytes | Tensor


@dataclass(frozen=True)
class Prediction:
    """One ranked class for one image."""

    rank: int
    index: int
    label: str
    probability: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def as_images(images: ImageSource | Sequence[ImageSource]) -> list[Tensor]:
    """Any image source, or a list of them, as a list of (3, H, W) tensors in [0, 1]."""
    if isinstance(images, Tensor) and images.ndim == 4:
        return list(images)
    if isinstance(images, (str, Path, bytes, Tensor)):
        return [load_image(images)]
    return [load_image(img) for img in images]


def predict(
    model: Model, images: ImageSource | Sequence[ImageSource], top: int = 5
) -> list[list[Prediction]]:
    """The ``top`` most probable classes of each image, best first."""
    if top < 1:
        raise BadArgument(f"top={top}: ask for at least one class")
    x = model.preprocess(as_images(images))
    probs, indices = top_k(model, x, top)
    return [
        [
            Prediction(rank + 1, int(i), model.label(int(i)), float(p))
            for rank, (p, i) in enumerate(zip(row_p, row_i))
        ]
        for row_p, row_i in zip(probs.tolist(), indices.tolist())
    ]
