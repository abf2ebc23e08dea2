"""Localization against a region (an object mask, or a box as a mask): where a map's relevance lies.

Maps are reduced to one signed channel and resized to the region's grid (the input's).

Relevance mass accuracy -- Arras, Osman & Samek 2022, "CLEVR-XAI: A benchmark dataset for the
ground truth evaluation of neural network explanations", Sec. 4.2: the share of the positive
relevance that falls inside the mask. The energy-based pointing game of Score-CAM (Wang et al.
2020, Sec. 5.2: the CAM's energy inside the box over its total, the CAM non-negative) is the
same formula on boxes, so the registry keeps one metric and ``energy`` as its alias. Quantus
sums the signed relevance instead (the paper keeps only positive relevance); the two agree on
non-negative maps. Higher is better; a map with no positive relevance scores 0.

Relevance rank accuracy -- Arras et al. 2022, Sec. 4.2: with K the mask's size in pixels, the
fraction of the map's K highest-ranked pixels that lie inside the mask (ties broken in seeded
random order). Higher is better. Both assume the region is the evidence the model should use.

Pointing game on masks -- Zhang et al. 2018: a hit when every pixel holding the map's maximum
lies within ``tolerance`` pixels (Euclidean) of the mask; with boxes it equals
:func:`.faithfulness.pointing_game`. Quantus counts a hit when any maximum lies in the mask,
without tolerance (the same on maps with one maximum and ``tolerance=0``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import BadArgument
from .faithfulness import MapReduce, pixel_ranks, reduce_maps


def _on_region(maps: Tensor, region: Tensor, reduce: MapReduce = "sum") -> tuple[Tensor, Tensor]:
    """(B, 1, H, W) float maps on the grid of ``region``, and the region as (B, 1, H, W) bool."""
    region = region.bool().reshape(region.shape[0], 1, *region.shape[-2:])
    m = reduce_maps(maps, reduce, (region.shape[-2], region.shape[-1])).to(region.device)
    if m.shape[0] != region.shape[0]:
        raise BadArgument(f"{region.shape[0]} regions for {m.shape[0]} maps: give one mask or box per map")
    return m, region


def relevance_mass(maps: Tensor, region: Tensor, *, reduce: MapReduce = "sum") -> Tensor:
    """(B,) share of each map's positive relevance inside its region (see the module doc)."""
    m, region = _on_region(maps, region, reduce)
    m = m.relu()
    total = m.flatten(1).sum(1)
    inside = (m * region).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=1e-30), torch.zeros_like(total))


def relevance_rank(maps: Tensor, region: Tensor, *, reduce: MapReduce = "sum", seed: int = 0) -> Tensor:
    """(B,) share of each map's top-K pixels inside its region, K = the region's size."""
    m, region = _on_region(maps, region, reduce)
    flat = region.flatten(1)
    k = flat.sum(1, keepdim=True)
    top = pixel_ranks(m, seed) < k
    hits = (top & flat).sum(1).float()
    return torch.where(k[:, 0] > 0, hits / k[:, 0].clamp(min=1).float(), torch.zeros_like(hits))


def near(region: Tensor, tolerance: float) -> Tensor:
    """(B, 1, H, W) bool: pixels within ``tolerance`` pixels (Euclidean) of the region."""
    r = int(tolerance)
    if r < 1:
        return region
    offsets = torch.arange(-r, r + 1, dtype=torch.float32, device=region.device)
    disc = ((offsets[:, None] ** 2 + offsets[None] ** 2) <= tolerance ** 2).float()[None, None]
    return F.conv2d(region.float(), disc, padding=r) > 0.5


def pointing_hits(maps: Tensor, region: Tensor, *, tolerance: float = 15.0,
                  reduce: MapReduce = "sum") -> Tensor:
    """(B,) bool: every maximum of each map is within ``tolerance`` pixels of its region."""
    if tolerance < 0:
        raise BadArgument(f"tolerance={tolerance!r}: must be 0 or more pixels")
    m, region = _on_region(maps, region, reduce)
    peak = m == m.flatten(1).amax(1).view(-1, 1, 1, 1)
    return (near(region, tolerance) | ~peak).flatten(1).all(1)
