"""``predict``: the top classes of each image, or a detector's detections."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ..errors import BadArgument
from ..methods.predict import top_k
from ..model import Model, guarded
from ..model.detections import is_detection_output, parse_detections
from .inputs import Images, as_images


@dataclass(frozen=True)
class Prediction:
    """One ranked class for one image."""

    rank: int
    index: int
    label: str
    probability: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def predict(model: Model, images: Images, top: int = 5) -> list[list[Prediction]]:
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


@dataclass(frozen=True)
class Detected:
    """One detection of one image: its index in the model's list, label, score and box
    ``(x0, y0, x1, y1)`` in model-input pixels (what ``explain --box`` takes)."""

    index: int
    label: str
    class_index: int
    score: float
    box: tuple[float, float, float, float]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Detections:
    """A detector's detections of each image, and the images as the model saw them."""

    detections: list[list[Detected]]
    images: Tensor
    """(B, C, H, W) in [0, 1], to draw the boxes on."""


def is_detector(model: Model, images: Images) -> Detections | None:
    """The detections of each image if ``model`` is a detector (torchvision's detection format),
    else ``None`` (a classifier: use :func:`predict`)."""
    x = model.preprocess(as_images(images))
    with guarded(model), torch.no_grad():
        out = model(x)
    if not is_detection_output(out):
        return None
    rows = [[Detected(i, model.label(int(d.labels[i])), int(d.labels[i]), float(d.scores[i]),
                      tuple(round(float(v), 1) for v in d.boxes[i]))  # type: ignore[arg-type]
             for i in range(len(d))] for d in parse_detections(out)]
    return Detections(rows, model.denormalize(x).clamp(0, 1))
