"""Task-level functions that join loading, model and methods for the user.

These are the verbs of the Python API that the CLI and the web app call too, so every surface
gives the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from .data import load_image, load_labelled_folder
from .errors import BadArgument
from .methods.attribution.cam_retrofit import Retrofit
from .methods.attribution.cam_retrofit import retrofit_cam as _retrofit_cam
from .methods.predict import top_k
from .model import Model
from .types import ProgressFn

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


def retrofit_cam(model: Model, folder: str | Path, *, layer: str = "auto",
                 progress: ProgressFn | None = None, **options: Any) -> Retrofit:
    """Make ``model`` CAM-ready: a GAP + linear head on ``layer``, fitted on a labelled folder.

    ``folder`` holds one subfolder of images per class. The user's model is not changed; the
    result's ``model`` is a new CAM-ready model and ``accuracy`` / ``original_accuracy`` compare
    it with the original on held-out images (options: see ``methods.attribution.cam_retrofit``).
    """
    images, labels, classes, _paths = load_labelled_folder(folder)
    return _retrofit_cam(model, images, labels, classes, layer=layer, progress=progress, **options)
