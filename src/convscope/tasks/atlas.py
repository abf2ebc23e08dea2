"""Questions asked of a finished atlas: a channel's top patches, an image's nearest neighbours.

These join the stored scan (:class:`~convscope.data.atlas.Atlas`), the dataset it came from and
the tensor methods of :mod:`convscope.methods.dataset`; the CLI (``convscope top``,
``convscope neighbors``) and the web app call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.atlas import Atlas, TopRecord
from ..data.datasets import ImageDataset, open_dataset
from ..errors import BadArgument, ConvscopeError, warn
from ..methods.dataset.neighbors import Metric, nearest_neighbors
from ..methods.dataset.patches import unit_boxes
from ..methods.dataset.scan import scan
from ..model import Model, load_model
from ..model.receptive import Box
from .atlas_map import check_indices


@dataclass(frozen=True)
class Patch:
    """A top image of a channel: the image as the model saw it, and the unit's field in it."""

    record: TopRecord
    image: Tensor
    """(3, H, W) in [0, 1] at the model's input size."""
    box: Box

    @property
    def crop(self) -> Tensor:
        return self.image[..., self.box.slices[0], self.box.slices[1]]


@dataclass(frozen=True)
class Neighbor:
    rank: int
    index: int
    distance: float
    source: str


def atlas_model(atlas: Atlas, model: Model | str | None = None) -> Model:
    """The model to use with an atlas: the one given, or the zoo model the atlas was made with."""
    if isinstance(model, Model):
        return model
    name = model or atlas.model_name
    try:
        return load_model(name)
    except ConvscopeError as err:
        raise BadArgument(f"atlas '{atlas.path}' was made with model {atlas.model_name!r}, which "
                          f"cannot be reloaded by name ({err}); pass the model (--model)") from err


def _dataset(atlas: Atlas) -> ImageDataset | None:
    """The atlas's dataset reopened, or None when it cannot be (in-memory, moved, changed)."""
    if not atlas.dataset:
        return None
    try:
        ds = open_dataset(atlas.dataset)
    except ConvscopeError:
        return None
    return ds if len(ds) == atlas.size else None


def atlas_images(atlas: Atlas, model: Model, indices: list[int]) -> Tensor:
    """Images (n, 3, H, W) at the model's input size: reloaded from the dataset when it is still
    there, else the stored thumbnails enlarged (a warning says so)."""
    ds = _dataset(atlas)
    if ds is not None:
        stored, current = atlas.sources(), ds.sources()
        if all(current[i] == stored[i] for i in indices):
            got = ds.load_batch(indices)
            if not got.failed:
                return model.resize(got.images)
    warn(f"atlas '{atlas.path}': its dataset cannot be reloaded; using thumbnails",
         UserWarning)
    return F.interpolate(_thumbnails(atlas, indices), size=model.input_size, mode="bilinear",
                         align_corners=False)


def atlas_image(atlas: Atlas, index: int) -> Tensor:
    """Image ``index`` of the atlas as a (3, H, W) tensor in [0, 1] at its own size: reloaded from
    the dataset when it is still there and unchanged, else the stored thumbnail."""
    check_indices(atlas, [index])
    ds = _dataset(atlas)
    if ds is not None and ds.sources()[index] == atlas.sources()[index]:
        got = ds.load_batch([index])
        if not got.failed:
            return got.images[0]
    return _thumbnails(atlas, [index])[0]


def top_patches(atlas: Atlas, model: Model, layer: str, channel: int, k: int | None = None, *,
                kind: Literal["activation", "relevance"] = "activation") -> list[Patch]:
    """The ``k`` top images of ``channel`` with the receptive field of their peak unit: by
    activation, or by ``kind="relevance"`` (RelMax, its peak of relevance)."""
    layer = atlas.layer_named(layer)
    records = atlas.top(layer, channel, k, kind=kind)
    if not records:
        return []
    images = atlas_images(atlas, model, [r.index for r in records])
    boxes = unit_boxes(model, layer, [(r.y, r.x) for r in records])
    return [Patch(r, img, box) for r, img, box in zip(records, images, boxes)]


def find_neighbors(
    atlas: Atlas,
    query: int | Tensor,
    *,
    model: Model | None = None,
    layer: str | None = None,
    k: int = 10,
    metric: Metric = "cosine",
) -> list[Neighbor]:
    """Nearest atlas images to a dataset index (itself excluded) or to an image (3, H, W)."""
    layer = atlas.layer_named(layer or atlas.layers[-1])
    database = torch.from_numpy(atlas.embeddings(layer))
    if isinstance(query, int):
        if not 0 <= query < atlas.size:
            raise BadArgument(f"index {query} is outside the atlas (0..{atlas.size - 1})")
        if not torch.isfinite(database[query]).all():
            raise BadArgument(f"image {query} was skipped by the scan; it has no embedding")
        q, exclude = database[query], torch.tensor([query])
    else:
        if model is None:
            raise BadArgument("a query image needs the atlas's model to embed it")
        x = model.preprocess([query])
        q, exclude = scan(model, x, [layer], k=1).embeddings[layer][0].cpu(), None
    found = nearest_neighbors(q, database, k=k, metric=metric, exclude=exclude)
    sources = atlas.sources()
    return [Neighbor(r, int(i), float(d), sources[int(i)])
            for r, (i, d) in enumerate(zip(found.indices[0].tolist(), found.distances[0].tolist()))
            if i >= 0]


def thumbnails_as_tensors(atlas: Atlas, indices: list[int]) -> list[Tensor]:
    """Stored thumbnails as (3, t, t) tensors in [0, 1] (for rendering)."""
    return list(_thumbnails(atlas, indices))


def _thumbnails(atlas: Atlas, indices: list[int]) -> Tensor:
    """Stored thumbnails (n, 3, t, t) float in [0, 1]."""
    arr: np.ndarray[Any, Any] = atlas.thumbnails(indices)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255)
