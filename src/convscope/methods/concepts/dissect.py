"""Network dissection (Bau et al. 2017, Sec. 2.2): which concept each unit of a layer detects.

For unit ``k`` with activation maps ``A_k(x)`` over a dataset of images with per-pixel concept
masks ``L_c(x)``:

- ``T_k`` is the top quantile of ``A_k`` over every image and position (``quantile`` = 0.995:
  the unit's strongest 0.5% responses);
- ``M_k(x) = S(A_k(x)) > T_k``, ``S`` the bilinear upsampling of the map to the image size
  (strictly above, as in the authors' code: a unit silent on most pixels does not claim them);
- ``IoU_{k,c} = sum_x |M_k(x) & L_c(x)| / sum_x |M_k(x) | L_c(x)|`` over the whole dataset;
- the unit's label is the concept of highest IoU.

A unit whose mask falls on the concept only by chance scores about ``q a / (q + a - q a)``,
``q`` and ``a`` the fractions of pixels covered by the mask and by the concept
(:attr:`Dissection.chance`); Bau et al. call a unit a detector above IoU 0.04.

Cost: one forward per batch (stopped after the layer) to read the maps, kept as (N, K, h, w);
the thresholds are order statistics per unit; a second sweep upsamples batch by batch and counts
intersections with all concepts in one product.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import BadArgument, BadLayer
from ...model.capture import forward_until, layer_map
from ...model.guard import guarded


@dataclass
class Dissection:
    """Each unit of one layer against each concept."""

    layer: str
    concepts: list[str]
    iou: Tensor
    """(units, concepts) IoU over the dataset."""
    thresholds: Tensor
    """(units,) the activation level ``T_k`` of each unit."""
    coverage: Tensor
    """(units,) fraction of the dataset's pixels in each unit's mask."""
    concept_coverage: Tensor
    """(concepts,) fraction of the dataset's pixels in each concept."""
    quantile: float

    @property
    def best(self) -> Tensor:
        """(units,) index of each unit's best concept."""
        return self.iou.argmax(1)

    @property
    def best_iou(self) -> Tensor:
        return self.iou.max(1).values

    @property
    def labels(self) -> list[str]:
        """Each unit's best concept, by name."""
        return [self.concepts[i] for i in self.best.tolist()]

    @property
    def chance(self) -> Tensor:
        """(units, concepts) the IoU a mask of the unit's coverage gets placed at random."""
        q, a = self.coverage[:, None], self.concept_coverage[None, :]
        return q * a / (q + a - q * a).clamp_min(1e-12)


def layer_maps(model: nn.Module, images: Tensor, layer: str, batch_size: int = 64) -> Tensor:
    """(N, K, h, w) maps of ``layer`` for ``images``; refused in one line without spatial maps."""
    parts = []
    with guarded(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            out = forward_until(model, batch, layer)
            maps = layer_map(model, layer, next(iter(out.values())), batch.shape)
            if maps.shape[-2:].numel() < 2:
                raise BadLayer(f"layer {layer!r} has no spatial maps (its maps are "
                               f"{tuple(maps.shape[-2:])}); dissect a convolutional layer before "
                               "the pooling")
            parts.append(maps.float())
    return torch.cat(parts)


def dissect(model: nn.Module, images: Tensor, masks: Mapping[str, Tensor], layer: str, *,
            quantile: float = 0.995, batch_size: int = 64) -> Dissection:
    """Dissect ``layer`` on model inputs ``images`` (N, C, H, W) with concept ``masks``, each
    (N, H, W) bool at the images' size (module docstring)."""
    if not 0 < quantile < 1:
        raise BadArgument(f"quantile={quantile}: use a value in (0, 1), e.g. 0.995")
    if not masks:
        raise BadArgument("dissect needs at least one concept: give masks={'name': (N, H, W) masks}")
    size = tuple(images.shape[-2:])
    for name, mask in masks.items():
        if tuple(mask.shape) != (len(images), *size):
            raise BadArgument(f"masks of concept {name!r} are {tuple(mask.shape)} but the images are "
                              f"{len(images)} of {size[0]}x{size[1]}; give one mask per image, "
                              "at the image's size")
    maps = layer_maps(model, images, layer, batch_size)
    units = maps.shape[1]
    flat = maps.transpose(0, 1).reshape(units, -1)
    rank = min(max(1, round(quantile * flat.shape[1])), flat.shape[1])
    thresholds = flat.kthvalue(rank, dim=1).values  # (K,)
    names = list(masks)
    truth = torch.stack([masks[n].bool() for n in names], 1)  # (N, C, H, W)
    inter = torch.zeros(units, len(names), dtype=torch.float64)
    area = torch.zeros(units, dtype=torch.float64)
    for start in range(0, len(images), batch_size):
        up = F.interpolate(maps[start:start + batch_size], size=size, mode="bilinear", align_corners=False)
        on = (up > thresholds[None, :, None, None]).transpose(0, 1).reshape(units, -1).double()
        concept = truth[start:start + batch_size].transpose(0, 1).reshape(len(names), -1).double()
        inter += on @ concept.T
        area += on.sum(1)
    concept_area = truth.transpose(0, 1).reshape(len(names), -1).double().sum(1)
    union = area[:, None] + concept_area[None, :] - inter
    pixels = float(len(images) * size[0] * size[1])
    return Dissection(layer, names, (inter / union.clamp_min(1)).float(), thresholds,
                      (area / pixels).float(), (concept_area / pixels).float(), quantile)
