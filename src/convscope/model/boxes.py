"""Boxes in plain torch: IoU, non-maximum suppression, and the two corner orders convscope meets.

convscope's own boxes are ``(top, left, bottom, right)`` with exclusive ends (slicing order);
detectors speak torchvision's ``(x0, y0, x1, y1)``. Both describe the same pixels, so
``[top:bottom, left:right]`` is the box ``(left, top, right, bottom)`` in detector order. Kept
here, below everything that draws, scores or explains detections, and free of torchvision (the
main environment has none that works).
"""

from __future__ import annotations

import torch
from torch import Tensor


def tlbr_to_xyxy(boxes: Tensor) -> Tensor:
    """(N, 4) ``(top, left, bottom, right)`` -> ``(x0, y0, x1, y1)`` (same pixels, float)."""
    return boxes[:, [1, 0, 3, 2]].float()


def xyxy_to_tlbr(boxes: Tensor) -> Tensor:
    """(N, 4) ``(x0, y0, x1, y1)`` -> ``(top, left, bottom, right)`` (the same swap, inverted)."""
    return boxes[:, [1, 0, 3, 2]]


def box_area(boxes: Tensor) -> Tensor:
    """(N,) areas of (N, 4) ``(x0, y0, x1, y1)`` boxes; an inverted box has area 0."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(N, M) intersection over union of (N, 4) and (M, 4) ``(x0, y0, x1, y1)`` boxes
    (torchvision's ``box_iou``); 0 where both boxes are empty."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression, by decreasing score: a box
    goes when it overlaps a kept, higher-scoring box by IoU > ``iou_threshold`` (torchvision's
    ``nms``)."""
    order = scores.argsort(descending=True)
    if order.numel() == 0:
        return order
    overlaps = (box_iou(boxes[order], boxes[order]) > iou_threshold).tolist()  # one transfer
    suppressed = [False] * order.numel()
    keep = []
    for i, row in enumerate(overlaps):
        if not suppressed[i]:
            keep.append(i)
            suppressed = [s or o for s, o in zip(suppressed, row)]
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """:func:`nms` within each label: boxes of different labels never suppress each other
    (torchvision's ``batched_nms``, by shifting each label's boxes apart)."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    shift = labels.to(boxes.dtype)[:, None] * (boxes.max() + 1)
    return nms(boxes + shift, scores, iou_threshold)
