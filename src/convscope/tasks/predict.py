"""``predict``: the top classes of each image."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import BadArgument
from ..methods.predict import top_k
from ..model import Model
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
