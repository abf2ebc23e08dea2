"""``concepts()``: discover a layer's concepts over a set of images, without labels.

Joins the pieces of :mod:`convscope.methods.concepts`: the layer's activations over the images
(or a dataset), their non-negative factorization into ``k`` concepts (DFF, Collins et al. 2018;
CRAFT, Fel et al. 2023), each concept's heatmap on every image, its top patches (the receptive
field of its strongest unit in its best images, as the atlas crops them), and its importance for
the target class (CRAFT's Sobol total indices, or the gradient estimate). Concepts come sorted by
importance, most important first. The CLI (``convscope concepts``) saves the gallery, JSON and
an HTML summary through :meth:`Concepts.save`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ..data.datasets import ImageDataset, open_dataset
from ..errors import BadArgument
from ..methods.concepts.discovery import discover, layer_activations, top_units
from ..methods.concepts.importance import Importance, concept_importance
from ..methods.concepts.nmf import Init
from ..methods.dataset.patches import unit_boxes
from ..model import Model, load_model
from ..model.receptive import Box, field_geometry
from ..model.targets import target_indices
from ..render.concept_gallery import concept_gallery, concept_page
from ..render.heatmap import save_png
from ..types import ProgressFn, Target
from .inputs import Images, as_images, is_model_input

DatasetLike = ImageDataset | torch.utils.data.Dataset | str | Path


@dataclass(frozen=True)
class ConceptPatch:
    """One top patch of a concept: the image, the unit's field in it and its coefficient."""

    image: int
    """Index into :attr:`Concepts.pixels` (and :attr:`Concepts.sources`)."""
    box: Box
    value: float
    crop: Tensor
    """(3, h, w) in [0, 1]."""


@dataclass(frozen=True)
class Concepts:
    """``k`` concepts of one layer, most important first (see the module notes)."""

    layer: str
    bases: Tensor
    """(k, C) concept directions in channel space, unit norm."""
    maps: Tensor
    """(N, k, h, w) coefficients at the layer's resolution."""
    heatmaps: Tensor
    """(N, k, H, W) the maps upsampled (bilinear) to the model's input size."""
    importances: Tensor
    """(k,) mean over images of :attr:`image_importances`."""
    image_importances: Tensor
    """(N, k) each concept's importance for each image's target score."""
    importance: str
    """"sobol" (total indices, >= 0) or "gradient" (signed)."""
    targets: list[int] | None
    """The class explained on each image (None for a callable target)."""
    patches: list[list[ConceptPatch]]
    pixels: Tensor
    """(N, 3, H, W) in [0, 1]: the images as the model saw them."""
    sources: list[str]
    relative_error: float
    """||A - U W|| / ||A|| of the factorization."""
    iterations: int
    converged: bool
    labels: list[str] = field(default_factory=list)
    """Class names of :attr:`targets` (empty when the model has none)."""

    @property
    def k(self) -> int:
        return int(self.bases.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """Everything but the pictures, for JSON."""
        return {
            "layer": self.layer, "k": self.k, "images": len(self.sources),
            "importance": self.importance, "relative_error": self.relative_error,
            "iterations": self.iterations, "converged": self.converged,
            "targets": self.targets, "target_labels": self.labels,
            "concepts": [{
                "concept": j, "importance": float(self.importances[j]),
                "mean_coefficient": float(self.maps[:, j].mean()),
                "basis_top_channels": self.bases[j].argsort(descending=True)[:5].tolist(),
                "patches": [{"image": p.image, "source": self.sources[p.image], "value": p.value,
                             "box": [p.box.top, p.box.left, p.box.bottom, p.box.right]}
                            for p in self.patches[j]],
            } for j in range(self.k)],
        }

    def gallery(self, images: int = 4) -> Image.Image:
        """One picture: a row per concept with its heatmaps on its best images (one colour
        scale per concept) and its top patches."""
        best = [[p.image for p in row[:images]] for row in self.patches]
        crops = [[p.crop for p in row] for row in self.patches]
        values = [[p.value for p in row] for row in self.patches]
        return concept_gallery(self.pixels, self.heatmaps, self.importances.tolist(), best, crops,
                               values, importance=self.importance,
                               title=f"{self.k} concepts of {self.layer} ({len(self.sources)} images)")

    def save(self, folder: str | Path, images: int = 4) -> dict[str, Path]:
        """Write ``gallery.png``, ``concepts.json`` and ``index.html`` into ``folder``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        gallery = self.gallery(images)
        paths = {"png": save_png(gallery, out / "gallery.png"), "json": out / "concepts.json",
                 "html": out / "index.html"}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        rows = [[j, float(self.importances[j]), float(self.maps[:, j].mean()),
                 ", ".join(Path(self.sources[p.image]).name for p in self.patches[j][:3])]
                for j in range(self.k)]
        meta = (f"{len(self.sources)} images; NMF relative error {self.relative_error:.3f} after "
                f"{self.iterations} iterations; importance: {self.importance}")
        paths["html"].write_text(concept_page(f"Concepts of {self.layer}", meta, gallery, rows,
                                              self.importance), encoding="utf-8")
        return paths


def _is_dataset(source: object) -> bool:
    if isinstance(source, (ImageDataset, torch.utils.data.Dataset)):
        return True
    return isinstance(source, (str, Path)) and (str(source) == "mnist5k" or Path(source).is_dir())


def _from_dataset(model: Model, source: DatasetLike, limit: int, label: int | None, seed: int
                  ) -> tuple[Tensor, list[str]]:
    """Up to ``limit`` items in a seeded random order (only those labelled ``label``), resized."""
    ds = open_dataset(source)
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    sources = ds.sources()
    pixels: list[Tensor] = []
    names: list[str] = []
    for start in range(0, len(order), 256):
        got = ds.load_batch(order[start:start + 256])
        items = list(got.images)
        for i, lab, img in zip(got.indices, got.labels, items):
            if label is None or lab == label:
                pixels.append(model.resize([img])[0])
                names.append(sources[i])
        if len(pixels) >= limit:
            break
    if not pixels:
        raise BadArgument(f"dataset {source!s} has no readable images"
                          + (f" labelled {label}" if label is not None else ""))
    return torch.stack(pixels[:limit]), names[:limit]


def _pixels(model: Model, source: Images | DatasetLike, limit: int, label: int | None, seed: int
            ) -> tuple[Tensor, Tensor, list[str]]:
    """(model inputs, pixels in [0, 1], source names) of what the concepts are found in."""
    if _is_dataset(source):
        pixels, names = _from_dataset(model, source, limit, label, seed)  # type: ignore[arg-type]
    elif isinstance(source, Tensor) and is_model_input(source):
        x = source.to(model.device)
        shown = model.denormalize(x).clamp(0, 1).cpu()
        shown = shown.expand(-1, 3, -1, -1) if shown.shape[1] == 1 else shown
        return x, shown, [f"input {i}" for i in range(len(x))]
    else:
        if label is not None:
            raise BadArgument("label= filters a dataset; images given one by one have no labels")
        listed = as_images(source)  # type: ignore[arg-type]
        pixels = model.resize(listed)
        names = [str(s) if isinstance(s, (str, Path)) else f"image {i}"
                 for i, s in enumerate(source if isinstance(source, (list, tuple)) else listed)]
    return model.normalize(pixels.to(model.device)), pixels.cpu(), names


def concepts(
    model: Model | nn.Module,
    images: Images | DatasetLike,
    *,
    layer: str = "auto",
    k: int = 6,
    target: Target = "top1",
    importance: Importance = "sobol",
    patches: int = 6,
    max_images: int = 200,
    label: int | None = None,
    designs: int = 32,
    max_iter: int = 1000,
    tol: float = 1e-7,
    init: Init = "nndsvda",
    seed: int = 0,
    batch_size: int = 64,
    progress: ProgressFn | None = None,
) -> Concepts:
    """Discover ``k`` concepts of ``layer`` in ``images`` (paths, tensors, or a dataset: a folder,
    ``"mnist5k"``, a torch Dataset), each with heatmaps, top patches and its importance for
    ``target`` (an int, label, ``"top1"`` = each image's predicted class, or a callable).

    ``max_images`` caps what a dataset contributes (a seeded random sample); ``label`` keeps only
    the dataset's images of that class (CRAFT explains a class on its own images). ``designs``:
    Sobol designs per concept (cost: designs x (k + 2) passes per image); ``importance="gradient"``
    costs one forward and backward per image instead.
    """
    model = model if isinstance(model, Model) else load_model(model)
    x, pixels, sources = _pixels(model, images, max_images, label, seed)
    acts = layer_activations(model, x, layer, batch_size=batch_size)
    found = discover(acts, k, max_iter=max_iter, tol=tol, seed=seed, init=init)
    per_image = concept_importance(model, x, found, target, method=importance, designs=designs,
                                   seed=seed, batch_size=batch_size, progress=progress)
    order = per_image.mean(0).argsort(descending=True)
    maps, per_image = found.maps[:, order], per_image[:, order]
    heat = F.interpolate(maps, size=tuple(pixels.shape[-2:]), mode="bilinear", align_corners=False)
    geometry = field_geometry(model, acts.layer)
    tops = top_units(maps, patches)
    boxes = unit_boxes(model, acts.layer, [(t.y, t.x) for row in tops for t in row], geometry=geometry)
    flat = iter(boxes)
    shown = [[ConceptPatch(t.image, b, t.value, pixels[t.image][..., b.slices[0], b.slices[1]])
              for t, b in zip(row, flat)] for row in tops]
    targets = _targets(model, acts.logits, target)
    return Concepts(
        layer=acts.layer, bases=found.bases[order].cpu(), maps=maps.cpu(), heatmaps=heat.cpu(),
        importances=per_image.mean(0).cpu(), image_importances=per_image.cpu(),
        importance=importance, targets=targets, patches=shown, pixels=pixels, sources=sources,
        relative_error=found.factorization.relative_error,
        iterations=found.factorization.iterations, converged=found.factorization.converged,
        labels=[model.label(t) for t in targets] if targets is not None and model.labels else [])


def _targets(model: Model, logits: Tensor, target: Target) -> list[int] | None:
    idx = target_indices(logits, target, model.labels)
    return None if idx is None else [int(i) for i in idx]
