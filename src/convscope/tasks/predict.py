"""``predict``: the top classes of each image, a detector's detections, or the per-pixel
classes of a segmenter."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import BadArgument
from ..methods.predict import class_map, top_k
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


@dataclass(frozen=True)
class Segmentation:
    """A dense model's per-pixel classes for one image."""

    classes: Tensor
    """(H, W) long, the most likely class of each pixel of the model's input."""
    image: Tensor
    """(3, H, W) in [0, 1]: the image as the model saw it, to draw the classes on."""
    shares: list[tuple[int, str, float]]
    """(class, label, fraction of the pixels) of every class present, largest first."""
    background: int | None
    """The class labelled "background" (left uncoloured in pictures), if the model has one."""

    def as_dict(self) -> dict[str, object]:
        return {"classes": [{"index": i, "label": label, "share": round(share, 4)}
                            for i, label, share in self.shares]}


def dense_prediction(model: Model, images: Images) -> Detections | list[Segmentation] | None:
    """What a detector or a segmenter sees in each image, from one forward pass: a detector's
    detections (torchvision's detection format) or a dense model's per-pixel classes (a
    (B, C, H, W) output or a dict with ``"out"``); ``None`` for any other model (a classifier:
    use :func:`predict`)."""
    x = model.preprocess(as_images(images))
    with guarded(model), torch.inference_mode():
        out = model(x)
    pixels = model.denormalize(x).clamp(0, 1)
    if is_detection_output(out):
        rows = [[Detected(i, model.label(int(d.labels[i])), int(d.labels[i]), float(d.scores[i]),
                          tuple(round(float(v), 1) for v in d.boxes[i]))  # type: ignore[arg-type]
                 for i in range(len(d))] for d in parse_detections(out)]
        return Detections(rows, pixels)
    maps = class_map(out)
    return None if maps is None else _segmentations(model, maps, pixels)


def _segmentations(model: Model, maps: Tensor, pixels: Tensor) -> list[Segmentation]:
    """Per image, the classes of ``maps`` (B, h, w), shown at the size of ``pixels`` (B, C, H, W)."""
    if tuple(maps.shape[-2:]) != tuple(pixels.shape[-2:]):  # a coarser output, shown at the input's size
        maps = F.interpolate(maps[:, None].float(), size=pixels.shape[-2:], mode="nearest")[:, 0].long()
    lowered = [name.lower() for name in (model.labels or [])]
    background = lowered.index("background") if "background" in lowered else None
    found = []
    for classes, image in zip(maps.cpu(), pixels.cpu()):
        counts = classes.flatten().bincount()
        present = [(int(i), model.label(int(i)), float(counts[i]) / classes.numel())
                   for i in counts.nonzero()[:, 0]]
        image = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
        found.append(Segmentation(classes, image, sorted(present, key=lambda p: -p[2]), background))
    return found
