"""Faithfulness of attribution maps: deletion / insertion curves, pointing game, box energy, IoU.

Deletion and insertion -- Petsiuk, Das & Saenko 2018, "RISE", Sec. 4.1 (causal metrics). Pixels
are ranked by attribution, most important first. *Deletion* replaces the top-ranked pixels with a
substrate (black by default) in ``steps`` equal increments and records the probability of the
target class after each one; a faithful map makes it fall fast (low AUC is good). *Insertion*
starts from a substrate (a blurred copy, "blur", by default, as in the RISE code) and puts the original
pixels back in the same order; a faithful map makes the probability rise fast (high AUC is good).
The score is the softmax probability of the target class (a callable target's own value is used
as is). The AUC is the trapezoid rule over the fraction of pixels changed, in [0, 1], which is the
RISE code's ``(sum(p) - p_0/2 - p_n/2) / n``.

Step k changes ``round(k * H * W / steps)`` pixels (all colour channels of a pixel together), so
``steps=100`` on 224x224 changes 501-502 pixels per step (RISE: 224 per step). Ties in the ranking
(flat regions of a rectified CAM) are broken by a seeded random permutation, not by raster order,
which would always delete the top rows first. All B * (steps + 1) curve images are built on the
fly in chunks of ``batch_size`` and scored on the inference fast path; one chunk is in memory.

Maps: (B, C, h, w) at any resolution; channels are reduced first (``reduce="sum"``, the signed
per-pixel total, so negative evidence is removed last; ``"abs"`` ranks by magnitude instead, the
usual choice for maps whose sign is arbitrary), then upsampled bilinearly to the input size.

Pointing game -- Zhang et al. 2018, "Top-down Neural Attention by Excitation Backprop", Sec. 5.1:
a hit when the map's maximum lies on the object, with 15 pixels of tolerance. Box energy --
Wang et al. 2020, "Score-CAM", Sec. 5.2 (energy-based pointing game): the fraction of the map's
positive mass inside the box. Localization IoU: the CAM box (:func:`localize`, 20% rule) against
the given box. These take maps and ``(top, left, bottom, right)`` boxes (exclusive ends) in the
same pixel grid. Tensors in, tensors out; shapes (B,).

Reading the numbers (EfficientNet-Lite0, ``sample:cat``, class 285, 20 steps): deletion rewards
high-frequency maps. Scattered black pixels take the image off the data distribution, so a
pixel-noise random map scores a deletion AUC of 0.02-0.03 and the saliency map 0.02, far below
Grad-CAM's 0.15; random maps at Grad-CAM's own 7x7 resolution score 0.17-0.43. Compare maps of
similar smoothness, or read insertion alongside (pixel noise 0.18-0.21, saliency 0.24, Grad-CAM
0.51; smooth 7x7 random maps 0.33-0.54 on this close-up, where nearly every region is cat).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import BadArgument, check_choice, check_positive
from ...model import FastForward, Model, default_batch_size, guarded, target_indices
from ...model.targets import reads_output
from ...types import ProgressFn, Target
from ..attribution.baselines import BaselineName, check_baseline, make_baseline
from .localization import box_iou, localize

Substrate = BaselineName
MapReduce = Literal["sum", "abs"]
CurveMode = Literal["deletion", "insertion"]


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve per sample and its area."""

    mode: str
    fractions: Tensor
    """(steps + 1,) fraction of pixels changed at each point, 0 to 1."""
    scores: Tensor
    """(B, steps + 1) target probability at each point (point 0: nothing changed)."""
    auc: Tensor
    """(B,) trapezoid area under ``scores`` over ``fractions``."""


def reduce_maps(maps: Tensor, reduce: MapReduce = "sum", size: tuple[int, int] | None = None) -> Tensor:
    """(B, C, h, w) or (B, h, w) -> (B, 1, H, W): channels reduced, resized to ``size`` if given."""
    check_choice("reduce", reduce, MapReduce)
    if not isinstance(maps, Tensor) or maps.ndim not in (3, 4):
        got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise BadArgument(f"maps of shape {got}: expected (B, C, H, W) or (B, H, W)")
    maps = (maps[:, None] if maps.ndim == 3 else maps).detach().float()
    maps = (maps.abs() if reduce == "abs" else maps).sum(1, keepdim=True)
    if size is not None and tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps


def substrate(model: Model, inputs: Tensor, kind: Substrate | Tensor, sigma: float = 5.0) -> Tensor:
    """What removed pixels become, (B, C, H, W) in model-input space, in the words of
    :mod:`convscope.methods.attribution.baselines`.

    "black": pixel value 0; "mean": the normalization mean (model-input zero: what the RISE code's
    deletion substrate ``zeros_like`` on normalized tensors is); "blur": Gaussian blur with
    ``sigma`` pixels, kernel radius 3 sigma (the RISE code blurs with sigma 5 cut to an 11x11
    kernel, a weaker blur); "uniform": seeded pixel noise; a tensor broadcastable to the inputs
    is used as given.
    """
    return make_baseline(model, inputs, check_baseline("substrate", kind), sigma=sigma,  # type: ignore[arg-type]
                         name="substrate")


def pixel_ranks(maps: Tensor, seed: int = 0) -> Tensor:
    """(B, 1, H, W) -> (B, H*W) long: 0 for each map's most important pixel, ties in seeded random order."""
    flat = maps.flatten(1)
    gen = torch.Generator().manual_seed(seed)
    shuffle = torch.randperm(flat.shape[1], generator=gen).to(flat.device)
    order = shuffle[flat[:, shuffle].argsort(dim=1, descending=True, stable=True)]
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return ranks.scatter_(1, order, positions)


def causal_curve(
    model: Model,
    inputs: Tensor,
    maps: Tensor,
    target: Target = "top1",
    *,
    mode: CurveMode = "deletion",
    steps: int = 100,
    substrate_kind: Substrate | Tensor | None = None,
    sigma: float = 5.0,
    reduce: MapReduce = "sum",
    batch_size: int | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    fast: FastForward | None = None,
) -> Curve:
    """Deletion or insertion curve of ``maps`` for model inputs (B, C, H, W); see the module doc.

    ``substrate_kind`` defaults to "black" for deletion and "blur" for insertion. ``target`` is
    read once on the unchanged inputs ("top1" of a half-deleted image is another class).
    Scoring runs on the inference fast path (:class:`~convscope.model.FastForward`: a folded
    copy, the model itself is only read); pass ``fast`` to reuse one across calls on the same
    weights. ``batch_size`` defaults to the fast path's per-device choice.
    """
    check_choice("mode", mode, CurveMode)
    check_positive("steps", steps, integer=True)
    if not isinstance(inputs, Tensor) or inputs.ndim != 4:
        raise BadArgument("inputs must be a (B, C, H, W) batch from model.preprocess")
    size = (inputs.shape[-2], inputs.shape[-1])
    maps = reduce_maps(maps, reduce, size).to(inputs.device)
    if maps.shape[0] != inputs.shape[0]:
        raise BadArgument(f"{maps.shape[0]} maps for {inputs.shape[0]} inputs: give one map per input")
    kind = substrate_kind if substrate_kind is not None else ("black" if mode == "deletion" else "blur")
    inputs = inputs.detach()
    base = substrate(model, inputs, kind, sigma)
    ranks = pixel_ranks(maps, seed)
    pixels, n = ranks.shape[1], int(steps) + 1
    counts = torch.div(torch.arange(n, device=inputs.device) * pixels * 2 + int(steps),
                       2 * int(steps), rounding_mode="floor")  # round(k * HW / steps)
    batch = int(batch_size) if batch_size is not None else default_batch_size(inputs.device)
    check_positive("batch_size", batch, integer=True)
    with guarded(model):  # eval mode even where the fast path must fall back on the model itself
        return _score_curve(model, inputs, base, ranks, counts, target, mode, batch,
                            fast if fast is not None else FastForward(model), progress)


def _score_curve(model: Model, inputs: Tensor, base: Tensor, ranks: Tensor, counts: Tensor,
                 target: Target, mode: CurveMode, batch: int, fast: FastForward,
                 progress: ProgressFn | None) -> Curve:
    size, n, pixels = (inputs.shape[-2], inputs.shape[-1]), counts.shape[0], ranks.shape[1]
    fixed = None if reads_output(target) else target_indices(fast(inputs), target, model.labels)
    rows_total = inputs.shape[0] * n

    def chunks() -> Iterator[Tensor]:
        for start in range(0, rows_total, batch):
            rows = torch.arange(start, min(start + batch, rows_total), device=inputs.device)
            b, k = rows // n, rows % n
            changed = (ranks[b] < counts[k, None]).view(-1, 1, *size)
            keep, swap = (inputs[b], base[b]) if mode == "deletion" else (base[b], inputs[b])
            yield torch.where(changed, swap, keep)

    row_target = fixed.repeat_interleave(n) if fixed is not None else target
    scores = fast.scores(chunks(), row_target, softmax=fixed is not None, total=rows_total,
                         progress=progress)
    fractions = counts.float() / pixels
    curve = scores.view(-1, n).clone()
    return Curve(mode, fractions, curve, torch.trapezoid(curve, fractions, dim=1))


def deletion(model: Model, inputs: Tensor, maps: Tensor, target: Target = "top1", *,
             steps: int = 100, substrate_kind: Substrate | Tensor = "black", **options: Any) -> Curve:
    """Deletion curve (lower AUC = more faithful): most important pixels set to the substrate first."""
    return causal_curve(model, inputs, maps, target, mode="deletion", steps=steps,
                        substrate_kind=substrate_kind, **options)


def insertion(model: Model, inputs: Tensor, maps: Tensor, target: Target = "top1", *,
              steps: int = 100, substrate_kind: Substrate | Tensor = "blur", **options: Any) -> Curve:
    """Insertion curve (higher AUC = more faithful): most important pixels restored first."""
    return causal_curve(model, inputs, maps, target, mode="insertion", steps=steps,
                        substrate_kind=substrate_kind, **options)


def _boxes(boxes: Tensor, batch: int, device: torch.device) -> Tensor:
    boxes = torch.as_tensor(boxes, device=device)
    if boxes.shape[-1:] != (4,) or boxes.ndim > 2:
        raise BadArgument(f"boxes of shape {tuple(boxes.shape)}: expected (B, 4) or (4,) "
                          "as (top, left, bottom, right)")
    boxes = boxes.reshape(-1, 4).expand(batch, 4) if boxes.numel() == 4 else boxes
    if boxes.shape[0] != batch:
        raise BadArgument(f"{boxes.shape[0]} boxes for {batch} maps: give one box per map")
    return boxes.float()


def pointing_game(maps: Tensor, boxes: Tensor, *, tolerance: float = 15.0,
                  reduce: MapReduce = "sum") -> Tensor:
    """(B,) bool: the map's maximum is within ``tolerance`` pixels of the box (Zhang et al. 2018).

    Distance is Euclidean from the pixel to the nearest pixel of the box. When several pixels
    share the maximum, every one of them must be within tolerance (a flat map points nowhere).
    """
    from .regions import pointing_hits  # regions builds on this module's map helpers

    m = reduce_maps(maps, reduce)
    b = _boxes(boxes, m.shape[0], m.device).long()
    return pointing_hits(m, box_mask(b, (m.shape[2], m.shape[3])), tolerance=tolerance)


def box_mask(boxes: Tensor, size: tuple[int, int], device: torch.device | None = None) -> Tensor:
    """(B, 1, H, W) bool: True inside each ``(top, left, bottom, right)`` box (exclusive ends)."""
    b = torch.as_tensor(boxes, device=device).reshape(-1, 4)
    rows = torch.arange(size[0], device=b.device).view(1, -1, 1)
    cols = torch.arange(size[1], device=b.device).view(1, 1, -1)
    inside_rows = (rows >= b[:, 0].view(-1, 1, 1)) & (rows < b[:, 2].view(-1, 1, 1))
    inside_cols = (cols >= b[:, 1].view(-1, 1, 1)) & (cols < b[:, 3].view(-1, 1, 1))
    return (inside_rows & inside_cols)[:, None]


def box_energy(maps: Tensor, boxes: Tensor, *, reduce: MapReduce = "sum") -> Tensor:
    """(B,) fraction of the positive map mass inside the box (Score-CAM's energy pointing game).

    ``sum(relu(map) in box) / sum(relu(map))``; a map without positive mass scores 0.
    """
    from .regions import relevance_mass

    m = reduce_maps(maps, reduce)
    b = _boxes(boxes, m.shape[0], m.device).long()
    return relevance_mass(m, box_mask(b, (m.shape[2], m.shape[3])))


def localization_iou(maps: Tensor, boxes: Tensor, *, threshold: float = 0.2,
                     reduce: MapReduce = "sum") -> Tensor:
    """(B,) IoU between the CAM box of each map (:func:`localize`) and the given box."""
    m = reduce_maps(maps, reduce)
    b = _boxes(boxes, m.shape[0], m.device)
    return box_iou(localize(m, threshold=threshold).boxes.to(b.device), b)
