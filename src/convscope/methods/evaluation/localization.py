"""Weakly supervised localization: a bounding box from any attribution map, and box IoU.

The protocol of CAM (Zhou et al. 2016, Sec. 3.1): keep the pixels whose value is at least
a fraction (20%) of the map's maximum, take the largest connected component of what is kept and
report its bounding box; a box counts as correct when its IoU with the ground truth is >= 0.5.

Shapes: maps (B, 1, H, W) (or (B, H, W)) at any resolution -> mask (B, 1, H, W) bool and boxes
(B, 4) long as ``(top, left, bottom, right)`` with EXCLUSIVE bottom/right, like slicing:
``mask[top:bottom, left:right]`` is the box, its area is ``(bottom - top) * (right - left)``.
A map with no positive maximum keeps nothing and gets the empty box ``(0, 0, 0, 0)``.

Connected components are labelled with ``scipy.ndimage.label`` (scipy ships with
scikit-image): the masks are copied to the CPU as numpy arrays for that one call, and the results
come back as tensors on the maps' device. Tensors in, tensors out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from ...errors import BadArgument

Connectivity = Literal[4, 8]


@dataclass(frozen=True)
class Localization:
    """The kept region of each map and its bounding box."""

    mask: Tensor
    """(B, 1, H, W) bool: the largest connected component above the threshold."""
    boxes: Tensor
    """(B, 4) long: ``(top, left, bottom, right)``, bottom/right exclusive."""


def _as_maps(maps: Tensor) -> Tensor:
    if not isinstance(maps, Tensor) or maps.ndim not in (3, 4) or (maps.ndim == 4 and maps.shape[1] != 1):
        got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise BadArgument(f"maps of shape {got}: expected (B, 1, H, W) or (B, H, W); reduce "
                          "per-channel maps to one channel first (e.g. .abs().sum(1, keepdim=True))")
    return (maps[:, None] if maps.ndim == 3 else maps).detach()


def threshold_mask(maps: Tensor, threshold: float = 0.2) -> Tensor:
    """(B, 1, H, W) bool: ``value >= threshold * max`` per map; nothing when the max is <= 0."""
    if not 0.0 <= threshold <= 1.0:
        raise BadArgument(f"threshold={threshold!r}: a fraction of the map's maximum in [0, 1]")
    maps = _as_maps(maps).float()
    peak = maps.amax((2, 3), keepdim=True)
    return (maps >= threshold * peak) & (peak > 0)


def largest_component(mask: Tensor, *, connectivity: Connectivity = 8) -> Tensor:
    """(B, 1, H, W) bool: the largest connected region of each mask (ties: the first found)."""
    if connectivity not in (4, 8):
        raise BadArgument(f"connectivity={connectivity!r}: use 4 (edges) or 8 (edges and corners)")
    structure = np.ones((3, 3), bool) if connectivity == 8 else ndimage.generate_binary_structure(2, 1)
    out = torch.zeros_like(mask, dtype=torch.bool)
    for i, plane in enumerate(mask[:, 0].cpu().numpy()):
        labels, count = ndimage.label(plane, structure=structure)
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        keep = labels == (1 + int(sizes.argmax()))
        out[i, 0] = torch.from_numpy(keep).to(mask.device)
    return out


def mask_boxes(mask: Tensor) -> Tensor:
    """(B, 4) long ``(top, left, bottom, right)`` around each mask (exclusive ends; empty -> 0s)."""
    m = _as_maps(mask).bool()[:, 0]
    rows, cols = m.any(2), m.any(1)  # (B, H), (B, W)
    boxes = torch.zeros(m.shape[0], 4, dtype=torch.long, device=m.device)
    for axis, present in ((0, rows), (1, cols)):
        size = present.shape[1]
        idx = torch.arange(size, device=m.device).expand_as(present)
        first = torch.where(present, idx, size).amin(1)
        last = torch.where(present, idx, -1).amax(1)
        nonempty = present.any(1)
        boxes[:, axis] = torch.where(nonempty, first, 0)
        boxes[:, axis + 2] = torch.where(nonempty, last + 1, 0)
    return boxes


def localize(
    maps: Tensor, *, threshold: float = 0.2, connectivity: Connectivity = 8
) -> Localization:
    """Box of the largest region where ``map >= threshold * max(map)`` (CAM's 20% rule).

    Args:
        maps: (B, 1, H, W) or (B, H, W) attributions at any resolution (upsample to the image
            first to get boxes in image pixels).
        threshold: fraction of each map's own maximum; pixels equal to it are kept.
        connectivity: 8 (default) joins diagonal neighbours, 4 only edge neighbours.
    """
    mask = largest_component(threshold_mask(maps, threshold), connectivity=connectivity)
    return Localization(mask, mask_boxes(mask))


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of ``(top, left, bottom, right)`` boxes (exclusive ends).

    Shapes broadcast: (N, 4) with (N, 4) gives (N,); ``a[:, None]`` with ``b[None]`` gives the
    (N, M) table. Two empty boxes have IoU 0.
    """
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise BadArgument(f"boxes of shapes {tuple(a.shape)} and {tuple(b.shape)}: the last "
                          "dimension must hold (top, left, bottom, right)")

    def area(box: Tensor) -> Tensor:
        return (box[..., 2] - box[..., 0]).clamp(min=0) * (box[..., 3] - box[..., 1]).clamp(min=0)

    top_left = torch.maximum(a[..., :2], b[..., :2])
    bottom_right = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = area(a) + area(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))
