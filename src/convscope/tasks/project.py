"""Maps of a dataset's embeddings: the points (from an atlas, or embedded here from a dataset)
and their 2-D or 3-D projection (t-SNE, UMAP or PCA) with the kNN label accuracy in the map.

Drawing the map is :func:`convscope.render.plots.embedding_scatter`'s job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.atlas import Atlas
from ..data.datasets import open_dataset
from ..errors import BadArgument, BadImage, check_positive
from ..methods.dataset.projection import knn_accuracy, project
from ..model import Model, capture, evaluating, resolve_layer
from ..render import png_bytes
from ..render.notebook import figure_html
from ..render.plots import embedding_scatter
from ..types import ProgressFn
from .atlas import atlas_model

THUMB = 32


@dataclass
class Points:
    """What a map is drawn from; rows of unreadable images are dropped before this."""

    embeddings: torch.Tensor  # (N, D)
    labels: np.ndarray  # (N,) -1 = none
    predictions: np.ndarray  # (N,) -1 = none
    thumbnails: np.ndarray  # (N, t, t, 3) uint8
    sources: list[str]
    class_names: list[str] | None
    layer: str
    skipped: int
    model_labels: list[str] | None = None
    """The model's class names: predictions index these, labels index ``class_names``."""


@dataclass
class EmbeddingMap:
    """Points and their coordinates in the map."""

    points: Points
    coords: torch.Tensor
    """(N, dims) map coordinates."""
    method: str
    knn_accuracy: float | None
    """Leave-one-out 5-NN label accuracy in the map (None without enough labels)."""
    seconds: float

    def rows(self) -> list[dict[str, Any]]:
        """JSON-ready points: coordinates, label, prediction, source."""
        keys = "xyz"[: self.coords.shape[1]]
        return [{**{k: round(float(v), 5) for k, v in zip(keys, row)},
                 "label": int(lab) if lab >= 0 else None,
                 "prediction": int(pred) if pred >= 0 else None, "source": src}
                for row, lab, pred, src in zip(self.coords.tolist(), self.points.labels,
                                               self.points.predictions, self.points.sources)]

    def picture(self, color_by: Literal["label", "prediction"] = "label", *,
                max_thumbnails: int = 150, size: tuple[int, int] = (1200, 1000)) -> Image.Image:
        """The map as a scatter coloured by label or prediction, with thumbnails (a 3-D map shows
        its first two axes)."""
        points = self.points
        if color_by == "prediction" and not (points.predictions >= 0).any():
            raise BadArgument("color_by='prediction': there are no predictions (the atlas has none)")
        labels, names = points.labels, points.class_names
        if color_by == "prediction" and points.model_labels != points.class_names:
            # predictions index the model's classes, not the dataset's: name them by the model and
            # do not mark "misclassified" points by comparing indices of two different lists
            labels, names = np.full_like(points.labels, -1), points.model_labels
        axes = "" if self.coords.shape[1] == 2 else ", first two axes"
        return embedding_scatter(
            self.coords[:, :2], labels, predictions=points.predictions, color_by=color_by,
            class_names=names, thumbnails=points.thumbnails, max_thumbnails=max_thumbnails,
            size=size, title=f"{self.method} of {points.layer} ({len(points.sources)} images{axes})")

    def headline(self) -> str:
        """One line: the method, layer, point count and the 5-NN accuracy in the map."""
        knn = "" if self.knn_accuracy is None else f"; 5-NN label accuracy in the map {self.knn_accuracy:.1%}"
        return (f"{self.method} map of {len(self.points.sources)} images at {self.points.layer} "
                f"({self.points.skipped} skipped){knn}")

    def _repr_png_(self) -> bytes:
        return png_bytes(self.picture(size=NOTEBOOK_SIZE))

    def _repr_html_(self) -> str:
        return figure_html(self.picture(size=NOTEBOOK_SIZE), self.headline())


NOTEBOOK_SIZE = (900, 720)
"""A map shown in a notebook: small enough to fit the cell, large enough for its thumbnails."""


def embedding_map(points: Points, method: str = "tsne", *, dims: int = 2, seed: int = 0,
                  **options: Any) -> EmbeddingMap:
    """Project the points to ``dims`` dimensions (options go to the projection)."""
    if points.embeddings.shape[0] < 5:
        raise BadArgument(f"only {points.embeddings.shape[0]} readable images: too few for a map")
    start = time.perf_counter()
    coords = project(points.embeddings, method, dims=dims, seed=seed, **options)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    labelled = points.labels >= 0
    knn = None
    if labelled.sum() > 5:
        keep = torch.from_numpy(labelled)
        knn = knn_accuracy(coords[keep], torch.from_numpy(points.labels[labelled]), k=5)
    return EmbeddingMap(points, coords, method, knn, seconds)


def atlas_points(atlas: str | Path | Atlas, layer: str | None = None) -> Points:
    """The embeddings of a finished atlas at ``layer`` (default its first), skipped rows left out."""
    atlas = atlas if isinstance(atlas, Atlas) else Atlas.open(atlas)
    layer = atlas.layer_named(layer or atlas.layers[0])
    idx, emb = atlas.valid_embeddings(layer)
    sources = atlas.sources()
    try:
        model_labels = atlas_model(atlas).labels
    except BadArgument:  # a model that cannot be reloaded by name: predictions stay numbers
        model_labels = None
    return Points(torch.from_numpy(emb), atlas.labels()[idx], atlas.predictions()[idx],
                  atlas.thumbnails(idx), [sources[i] for i in idx], atlas.class_names, layer,
                  atlas.size - len(idx), model_labels)


def dataset_points(model: Model, dataset: Any, layer: str = "auto", *, limit: int | None = None,
                   batch_size: int = 256, progress: ProgressFn | None = None) -> Points:
    """Embed ``limit`` images spread evenly over ``dataset`` (default all): the spatial mean of
    ``layer``'s activation, the prediction and a thumbnail per image, in one forward per batch."""
    check_positive("batch_size", batch_size, integer=True)
    data = open_dataset(dataset)
    layer = resolve_layer(model, layer)
    total = len(data)
    count = total if limit is None else max(1, min(limit, total))
    indices = np.unique(np.linspace(0, total - 1, count).round().astype(np.int64))
    parts: list[tuple[torch.Tensor, torch.Tensor, np.ndarray]] = []
    labels: list[int] = []
    sources: list[str] = []
    skipped = 0
    for start in range(0, len(indices), batch_size):
        images = []
        for i in indices[start:start + batch_size]:
            try:
                item = data.load(int(i))
            except BadImage:
                skipped += 1
                continue
            images.append(item.image)
            labels.append(-1 if item.label is None else item.label)
            sources.append(item.source)
        if images:
            parts.append(_embed_batch(model, images, layer))
        if progress is not None:
            progress(min(start + batch_size, len(indices)), len(indices))
    if not parts:
        raise BadImage(f"no image of dataset '{dataset}' could be read")
    return Points(torch.cat([p[0] for p in parts]).cpu(), np.asarray(labels, dtype=np.int64),
                  torch.cat([p[1] for p in parts]).cpu().numpy(),
                  np.concatenate([p[2] for p in parts]), sources,
                  data.class_names or _names(model, labels), layer, skipped, model.labels)


@torch.no_grad()
def _embed_batch(model: Model, images: list[torch.Tensor], layer: str
                 ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(embeddings (B, D), predictions (B,), thumbnails (B, t, t, 3) uint8) in one forward."""
    pixels = model.resize(images)
    with evaluating(model), capture(model, layer) as record:
        logits = model(model.normalize(pixels.to(model.device)))
        act = record[layer]
    emb = act.flatten(2).mean(2) if act.ndim > 2 else act.flatten(1)
    small = pixels if pixels.shape[-1] <= THUMB else F.interpolate(
        pixels, size=(THUMB, THUMB), mode="bilinear", antialias=True, align_corners=False)
    thumbs = (small.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return emb.float(), logits.argmax(1), thumbs


def _names(model: Model, labels: list[int]) -> list[str] | None:
    """Unlabelled datasets are coloured by prediction with the model's class names."""
    return model.labels if all(label < 0 for label in labels) else None
