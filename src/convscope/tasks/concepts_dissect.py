"""``dissect``: label each unit of a layer with the concept its strongest responses cover.

Datasets with pixel masks per concept (:func:`load_masked`):

- ``"digits_planted"``: the 1,000 held-out digits of :mod:`convscope.data.planted`, each with
  the striped cue; concepts ``stripes`` (the cue's square) and ``ink`` (the digit).
- ``"digit_scenes"``: held-out :mod:`convscope.data.digit_scenes` canvases; one concept per
  digit class (its ink pixels).
- a folder with ``images/`` and ``masks/<concept>/``: a mask is the image file of the same stem
  in a concept's folder, white (> 0.5) on the concept, at the image's size; an image without
  a mask in a concept's folder does not show that concept.

Masks go through the same resize as their images (crop, letterbox or stretch to the model's
input), then :func:`convscope.methods.concepts.dissect.dissect` computes the IoUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from ..data.datasets import FolderDataset
from ..data.images import load_image
from ..errors import BadImage
from ..methods.concepts.dissect import Dissection
from ..methods.concepts.dissect import dissect as dissect_units
from ..model import Model, resolve_layer
from ..render.concepts import dissection_chart, summary_page
from .concepts_output import write_outputs

PLANTED = "digits_planted"
SCENES = "digit_scenes"


def load_masked(model: Model, spec: str | os.PathLike, limit: int | None = None
                ) -> tuple[Tensor, dict[str, Tensor]]:
    """(model inputs (N, C, H, W), concept -> (N, H, W) bool masks at the input size)."""
    text = os.fspath(spec)
    if text == PLANTED:
        from ..data.planted import CUE_NAME, planted_digits

        data = planted_digits("heldout", "always")
        images, masks = list(data.images), {CUE_NAME: data.cue_masks, "ink": data.ink_masks}
    elif text == SCENES:
        from ..data.digit_scenes import BACKGROUND, DigitScenes

        batch = DigitScenes("heldout", n=limit or 200).batch(range(limit or 200))
        images = list(batch.images)
        masks = {str(d): batch.masks == d for d in range(BACKGROUND)}
    else:
        images, masks = _folder(Path(text))
    if limit is not None:
        images, masks = images[:limit], {k: v[:limit] for k, v in masks.items()}
    inputs = model.preprocess(images)
    fitted = {name: model.resize([m[None].float() for m in mask])[:, 0] > 0.5 for name, mask in masks.items()}
    return inputs, fitted


def _folder(root: Path) -> tuple[list[Tensor], dict[str, Tensor]]:
    """``root/images`` and ``root/masks/<concept>/``: images and their masks at their own size
    (masks are padded to a stack per image size later, so images here must share one size)."""
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise BadImage(f"dissection dataset '{root}' needs an images/ folder and a masks/ folder with "
                       "one subfolder of mask PNGs per concept (or use digits_planted, digit_scenes)")
    images_data = FolderDataset(root / "images")
    concepts = sorted(p for p in (root / "masks").iterdir() if p.is_dir() and not p.name.startswith("."))
    if not concepts:
        raise BadImage(f"dissection dataset '{root}': masks/ has no concept subfolders")
    images = [images_data.load(i).image for i in range(len(images_data))]
    stems = [Path(s).stem for s in images_data.sources()]
    masks: dict[str, Tensor] = {}
    for folder in concepts:
        files = {p.stem: p for p in folder.iterdir() if p.is_file()}
        per_image = []
        for stem, image in zip(stems, images):
            if stem not in files:
                per_image.append(torch.zeros(image.shape[-2:], dtype=torch.bool))
                continue
            mask = load_image(files[stem])
            if mask.shape[-2:] != image.shape[-2:]:
                raise BadImage(f"mask '{files[stem]}' is {mask.shape[-1]}x{mask.shape[-2]} but its image "
                               f"'{stem}' is {image.shape[-1]}x{image.shape[-2]}; masks must have their "
                               "image's size")
            per_image.append(mask.mean(0) > 0.5)
        masks[folder.name] = _stack(per_image, root)
    return images, masks


def _stack(masks: list[Tensor], root: Path) -> Tensor:
    if len({tuple(m.shape) for m in masks}) > 1:
        raise BadImage(f"dissection dataset '{root}': its images have several sizes; resize them to one")
    return torch.stack(masks)


@dataclass
class DissectReport:
    """A dissected layer, with how to show it."""

    result: Dissection
    model_name: str
    dataset: str

    def rows(self, top: int | None = None) -> list[dict[str, Any]]:
        """Units by best IoU, highest first: label, IoU, chance IoU, IoU with every concept."""
        r = self.result
        order = r.best_iou.argsort(descending=True).tolist()[:top]
        chance = r.chance
        return [{"unit": k, "label": r.concepts[int(r.best[k])], "iou": float(r.best_iou[k]),
                 "chance_iou": float(chance[k, r.best[k]]), "threshold": float(r.thresholds[k]),
                 "ious": {c: float(r.iou[k, j]) for j, c in enumerate(r.concepts)}} for k in order]

    def chart(self, top: int = 20) -> Image.Image:
        rows = self.rows(top)
        return dissection_chart([d["unit"] for d in rows], [d["iou"] for d in rows],  # type: ignore[arg-type]
                                [d["label"] for d in rows], [d["chance_iou"] for d in rows],  # type: ignore[arg-type]
                                self.result.concepts,
                                title=f"{self.model_name} {self.result.layer} on {self.dataset}")

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {"model": self.model_name, "layer": r.layer, "dataset": self.dataset, "quantile": r.quantile,
                "concepts": r.concepts, "units": self.rows()}

    def table(self, top: int | None = None) -> list[list[str]]:
        """The top units as text cells, a header first (the CLI prints it, the page shows it)."""
        return [["unit", "concept", "IoU", "chance IoU"]] + [
            [str(d["unit"]), d["label"], f"{d['iou']:.3f}", f"{d['chance_iou']:.4f}"] for d in self.rows(top)]

    def html(self, top: int = 20) -> str:
        header, *rows = self.table(top)
        notes = [f"Each unit's mask: where its map, upsampled to the image, exceeds its "
                 f"{self.result.quantile} quantile over the dataset (Bau et al. 2017). IoU with a "
                 "concept's masks over the whole dataset; chance: the IoU of a mask of the same size "
                 "placed at random."]
        return summary_page(f"Dissection: {self.result.layer}",
                            f"model {self.model_name}, dataset {self.dataset}", header, rows, notes,
                            self.chart(top), alt="best IoU per unit")

    def save(self, folder: str | os.PathLike, top: int = 20) -> dict[str, Path]:
        """Write dissect.png and dissect.html (the ``top`` units) and dissect.json (every unit)."""
        return write_outputs(folder, "dissect", self.chart(top), self.as_dict(), self.html(top))


def dissect(model: Model, dataset: str | os.PathLike = PLANTED, layer: str = "auto", *,
            quantile: float = 0.995, limit: int | None = None, batch_size: int = 64) -> DissectReport:
    """Dissect ``layer`` of ``model`` on a dataset with concept masks (module docstring)."""
    name = resolve_layer(model, layer)
    inputs, masks = load_masked(model, dataset, limit)
    result = dissect_units(model, inputs, masks, name, quantile=quantile, batch_size=batch_size)
    return DissectReport(result, model.name, os.fspath(dataset))
