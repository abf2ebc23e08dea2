"""How well a dense model reads a dataset with known truth: mean IoU of a segmentation and mean
average precision of detections, in plain torch (no torchvision, torchmetrics or pycocotools).

Definitions (stated because every library varies them a little):

- :func:`class_iou` / :func:`mean_iou`: IoU of each class over all pixels of all images (one
  confusion matrix, as in Pascal VOC segmentation), the mean over the classes that occur in the
  truth or the prediction; a class in neither has no IoU (NaN) and is left out.
- :func:`average_precision` / :func:`mean_average_precision`: per class, detections of all images
  ranked by score; each is a hit when its IoU with a not yet matched true box of its label and
  image is at least ``iou_threshold`` (the best-overlapping such box), else a false positive (COCO's
  ``>=``; Pascal VOC's devkit uses ``>``). AP is the area under the precision-recall curve with
  precision made monotone (VOC 2010+ all-point interpolation). mAP averages the classes that
  have at least one true box.

Boxes are ``(x0, y0, x1, y1)``, the detector order (:func:`convscope.model.boxes.tlbr_to_xyxy`
converts convscope's ``(top, left, bottom, right)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from ..errors import BadArgument
from ..model.boxes import box_iou, tlbr_to_xyxy
from .digit_scenes import CLASS_NAMES, DigitScenes


def class_iou(predicted: Tensor, truth: Tensor, classes: int) -> Tensor:
    """(classes,) IoU of each class between two integer label maps of the same shape; NaN for a
    class absent from both."""
    if predicted.shape != truth.shape:
        raise BadArgument(f"segmentation of shape {tuple(predicted.shape)} does not match the "
                          f"truth's {tuple(truth.shape)}")
    pairs = truth.reshape(-1).long() * classes + predicted.reshape(-1).long()
    confusion = torch.bincount(pairs, minlength=classes * classes).view(classes, classes).double()
    hits = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - hits
    return torch.where(union > 0, hits / union.clamp(min=1), torch.full_like(hits, float("nan")))


def mean_iou(predicted: Tensor, truth: Tensor, classes: int) -> float:
    """Mean of :func:`class_iou` over the classes present in the truth or the prediction."""
    iou = class_iou(predicted, truth, classes)
    return float(iou[~iou.isnan()].mean())


def average_precision(detections: Sequence[Mapping[str, Tensor]], truths: Sequence[Mapping[str, Tensor]],
                      label: int, iou_threshold: float = 0.5) -> float | None:
    """AP of one label over images; ``None`` when no image has a true box of that label.

    ``detections``: one dict per image with ``boxes`` (N, 4), ``labels`` (N,), ``scores`` (N,)
    (torchvision's format); ``truths``: one dict per image with ``boxes`` and ``labels``.
    """
    if len(detections) != len(truths):
        raise BadArgument(f"{len(detections)} images of detections but {len(truths)} of truth")
    ranked: list[tuple[float, int, Tensor]] = []
    true_boxes: list[Tensor] = []
    for image, (found, real) in enumerate(zip(detections, truths)):
        mine = found["labels"] == label
        ranked += [(float(s), image, b) for s, b in zip(found["scores"][mine].detach(),
                                                       found["boxes"][mine].detach().float())]
        true_boxes.append(real["boxes"][real["labels"] == label].float())
    total = sum(len(b) for b in true_boxes)
    if total == 0:
        return None
    ranked.sort(key=lambda r: -r[0])
    matched = [torch.zeros(len(b), dtype=torch.bool) for b in true_boxes]
    hits = torch.zeros(len(ranked))
    for rank, (_, image, box) in enumerate(ranked):
        candidates = true_boxes[image]
        if len(candidates) == 0:
            continue
        iou = box_iou(box[None], candidates)[0].masked_fill(matched[image], -1.0)
        best = int(iou.argmax())
        if iou[best] >= iou_threshold:
            matched[image][best] = True
            hits[rank] = 1.0
    tp = hits.cumsum(0)
    recall = torch.cat([torch.zeros(1), tp / total])
    precision = torch.cat([torch.ones(1), tp / torch.arange(1, len(ranked) + 1)])
    envelope = precision.flip(0).cummax(0).values.flip(0)  # best precision at this recall or more
    return float(((recall[1:] - recall[:-1]) * envelope[1:]).sum())


def mean_average_precision(detections: Sequence[Mapping[str, Tensor]],
                           truths: Sequence[Mapping[str, Tensor]], classes: int,
                           iou_threshold: float = 0.5) -> float:
    """Mean of :func:`average_precision` over labels ``0..classes-1`` that have a true box."""
    values = [average_precision(detections, truths, c, iou_threshold) for c in range(classes)]
    present = [v for v in values if v is not None]
    if not present:
        raise BadArgument("no true boxes in any image: mean average precision is undefined")
    return sum(present) / len(present)


@torch.no_grad()
def score_segmenter(model: Callable[[Tensor], Tensor], scenes: DigitScenes, batch: int = 50) -> float:
    """Mean IoU over :data:`~convscope.data.digit_scenes.CLASS_NAMES` (digits and background) of
    ``model``'s argmax on every scene of ``scenes``. ``model`` gets the images as they are,
    (B, 1, S, S) in [0, 1] (the shipped models normalize with mean 0, std 1)."""
    predicted, truth = [], []
    for start in range(0, len(scenes), batch):
        part = scenes.batch(range(start, min(start + batch, len(scenes))))
        predicted.append(model(part.images).argmax(1))
        truth.append(part.masks)
    return mean_iou(torch.cat(predicted), torch.cat(truth), len(CLASS_NAMES))


@torch.no_grad()
def score_detector(model: Callable[[Tensor], list[dict[str, Tensor]]], scenes: DigitScenes,
                   batch: int = 50, iou_threshold: float = 0.5) -> float:
    """mAP at ``iou_threshold`` of ``model``'s detections (torchvision's format, from the images
    as they are, like :func:`score_segmenter`) on every scene of ``scenes``."""
    found: list[dict[str, Tensor]] = []
    truths: list[dict[str, Tensor]] = []
    for start in range(0, len(scenes), batch):
        part = scenes.batch(range(start, min(start + batch, len(scenes))))
        found += model(part.images)
        truths += [{"boxes": tlbr_to_xyxy(b), "labels": lab} for b, lab in zip(part.boxes, part.labels)]
    return mean_average_precision(found, truths, len(CLASS_NAMES) - 1, iou_threshold)
