"""Feature visualization as a task: the optimized image(s) for an objective as one picture.

One unit gives one image; an objective over several units at once (``channel(layer, [0, 1,
2])``) gives a captioned grid. The optimization itself is :func:`convscope.methods.features.visualize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image
from torch import Tensor

from ..data import load_image
from ..methods.features import Objective, channel, visualize
from ..model import Model
from ..render import image_grid, png_bytes
from ..render.notebook import figure_html
from ..types import ProgressFn
from .inputs import ImageSource


@dataclass
class Visualization:
    picture: Tensor | Image.Image
    """One image (3, H, W) in [0, 1], or a captioned grid of several."""
    result: Any
    """:class:`~convscope.methods.features.optimize.Visualization`: images, values, seconds."""
    summary: dict[str, Any]
    headline: str

    def _repr_png_(self) -> bytes:
        return png_bytes(self.picture)

    def _repr_html_(self) -> str:
        return figure_html(self.picture, self.headline, alt=self.summary["objective"])


def captions(objective: Objective, n: int) -> list[str]:
    """``LAYER ch C`` per image of a batched unit objective, else ``NAME #i``."""
    units = getattr(objective, "units", None)
    if objective.batch is not None and units is not None and len(units) == n:
        return [f"{objective.layers[0]} ch {u}" if objective.layers else str(u) for u in units]
    return [f"{objective.name} #{i}" for i in range(n)]


def visualization(model: Model, objective: Objective, *, start: str | ImageSource = "noise",
                  progress: ProgressFn | None = None, **options: Any) -> Visualization:
    """Optimize images that excite ``objective``; ``options`` go to ``visualize`` (``param``,
    ``steps``, ``size``, ``lr``, ``l2``, ``tv``, ``blur_every``, ``transforms``, ``seed`` ...)."""
    begin: Any = start if isinstance(start, str) and start in ("noise", "zeros") else load_image(start)
    result = visualize(model, objective, start=begin, progress=progress, **options)
    images = result.images.cpu()
    if model.channels == 1:  # a gray model sees the mean of the RGB image: show that, not colours it ignores
        images = images.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    picture: Tensor | Image.Image = images[0]
    param, steps = options.get("param", "fourier"), options.get("steps", 256)
    if images.shape[0] > 1:
        picture = image_grid(images, captions=captions(objective, images.shape[0]),
                             ncols=min(8, images.shape[0]),
                             title=f"{model.name}: {objective.name}, {param}, {steps} steps")
    values = [round(float(v), 4) for v in result.values]
    summary = {"objective": objective.name, "param": param, "steps": steps, "values": values,
               "seconds": round(result.seconds, 3)}
    shown = ", ".join(f"{v:.3g}" for v in values[:8]) + (" ..." if len(values) > 8 else "")
    return Visualization(picture, result, summary,
                         f"objective {shown}; {result.seconds:.1f}s")


def channel_visualization(model: Model, layer: str, unit: int, *, seed: int = 0, size: int | None = None,
                          steps: int = 64, progress: ProgressFn | None = None) -> Visualization:
    """One channel's feature visualization with the library's defaults (Fourier image, standard
    transforms): what the web app's layer and unit pages draw, one cached job per setting."""
    return visualization(model, channel(layer, unit), seed=seed, size=size, steps=steps,
                         progress=progress)
