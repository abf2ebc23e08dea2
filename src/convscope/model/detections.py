"""Detectors' outputs read once, and the :class:`~convscope.types.Detection` target scored on them.

torchvision's detection format (Faster R-CNN, RetinaNet, FCOS, SSD/SSDlite, Mask R-CNN in eval
mode, and the shipped ``digits_detector``) is a list with one dict per image: ``boxes`` (N, 4)
float ``(x0, y0, x1, y1)`` in input pixels, ``labels`` (N,) int64 and ``scores`` (N,) after
non-maximum suppression. The scores keep their graph to the input, so a detection's score can be
differentiated like a class logit. The detection set changes from one input to the next (a
perturbed copy may lose a box or gain one), so the asked detection is matched again in every
forward: the detection of the asked label with the highest IoU with the asked box, at least the
target's ``iou_threshold`` (docs/architecture.md, convention 7).

Other formats come in through one adapter, :func:`yolo_detections`: (B, N, 4 + 1 + C) tensors of
boxes, objectness and class probabilities (YOLOv3/v5-style heads), decoded to the same format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from ..errors import BadArgument, BadTarget
from ..types import Detection
from .boxes import batched_nms, box_iou

NEAREST = 3
"""How many detections a refusal lists."""


@dataclass(frozen=True)
class Detections:
    """One image's detections: ``boxes`` (N, 4) ``(x0, y0, x1, y1)``, ``labels`` (N,) long,
    ``scores`` (N,), and optionally ``class_scores`` (N, C), each detection's class vector, and
    ``objectness`` (N,) (the YOLO adapter keeps both)."""

    boxes: Tensor
    labels: Tensor
    scores: Tensor
    class_scores: Tensor | None = None
    objectness: Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.numel())


def is_detection_output(out: object) -> bool:
    """Whether ``out`` is torchvision's detection format (a list of dicts with boxes, labels, scores)."""
    return isinstance(out, (list, tuple)) and all(
        isinstance(d, Mapping) and {"boxes", "labels", "scores"} <= set(d) for d in out) and len(out) > 0


def parse_detections(out: Any) -> list[Detections]:
    """The detections of each image of a detector's output, or a one-line refusal."""
    if not is_detection_output(out):
        from .targets import describe_output

        raise BadTarget(f"a Detection target needs a detector's output (a list of dicts with 'boxes', "
                        f"'labels' and 'scores', torchvision's format), but the model returns a "
                        f"{describe_output(out)}; decode other formats with "
                        "convscope.model.detections.yolo_detections or a model_output= callable")
    return [Detections(d["boxes"].reshape(-1, 4), d["labels"].reshape(-1).long(), d["scores"].reshape(-1),
                       d.get("class_scores"), d.get("objectness")) for d in out]


def bind_label(target: Detection, labels: Sequence[str] | None) -> Detection:
    """``target`` with its label as a class index of the model, refused in one line if it has none."""
    from .targets import check_class

    label = check_class(target.label, labels, top1=False)
    assert isinstance(label, int)
    return target if label == target.label else Detection(target.box, label, target.iou_threshold,
                                                          target.box_term)


def check_box(target: Detection, height: int, width: int) -> None:
    """Refuse a box that is not inside the (height, width) input, or an empty one, in one line."""
    x0, y0, x1, y1 = target.box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise BadTarget(f"box ({', '.join(f'{v:g}' for v in target.box)}) is not inside the "
                        f"{width}x{height} model input: give x0,y0,x1,y1 with 0 <= x0 < x1 <= {width} "
                        f"and 0 <= y0 < y1 <= {height} (model-input pixels)")
    if not 0 < target.iou_threshold <= 1:
        raise BadArgument(f"iou_threshold={target.iou_threshold!r}: an IoU in (0, 1]")


def _asked(target: Detection, like: Tensor) -> Tensor:
    return torch.tensor([target.box], dtype=like.dtype, device=like.device)


def match(dets: Detections, target: Detection) -> tuple[int, Tensor] | None:
    """Index of the detection that ``target`` names and its IoU with the asked box (a tensor
    that keeps its graph to the boxes), or ``None``."""
    if not len(dets):
        return None
    ious = box_iou(_asked(target, dets.boxes), dets.boxes)[0]
    fits = (dets.labels == int(target.label)) & (ious.detach() >= target.iou_threshold)
    if not bool(fits.any()):
        return None
    best = int(torch.where(fits, ious.detach(), torch.full_like(ious, -1.0)).argmax())
    return best, ious[best]


def detection_scores(out: Any, target: Detection) -> Tensor:
    """(B,) the matched detection's score per image (+ its IoU with the box when ``box_term``);
    0 for an image where nothing matches (a perturbed copy that lost the detection)."""
    scores = []
    for dets in parse_detections(out):
        found = match(dets, target)
        if found is None:
            scores.append(dets.scores.sum() * 0)  # keeps the graph: a zero gradient, not an error
            continue
        best, iou = found
        scores.append(dets.scores[best] + iou if target.box_term else dets.scores[best])
    return torch.stack(scores)


def drise_similarity(out: Any, target: Detection) -> Tensor:
    """(B,) D-RISE's similarity of each image's detections to the target (Petsiuk et al. 2021,
    Sec. 3.2, Eq. 3): the largest ``IoU(L_t, L_j) x cos(P_t, P_j) x O_j`` over detections j, with
    ``P_t`` the one-hot class of the target. torchvision's format has one label and one score per
    detection: its class vector is taken as one-hot (the cosine is 1 for the target's label, else
    0) and its objectness as the score; ``class_scores`` and ``objectness`` are used where given."""
    sims = []
    for dets in parse_detections(out):
        if not len(dets):
            sims.append(dets.scores.new_zeros(()))
            continue
        iou = box_iou(_asked(target, dets.boxes), dets.boxes)[0]
        label = int(target.label)
        if dets.class_scores is not None and label < dets.class_scores.shape[-1]:
            cos = dets.class_scores[:, label] / dets.class_scores.norm(dim=-1).clamp(min=1e-12)
        else:
            cos = (dets.labels == label).to(iou.dtype)
        objectness = dets.objectness if dets.objectness is not None else dets.scores
        sims.append((iou * cos * objectness).amax())
    return torch.stack(sims)


def _text(dets: Detections, i: int, labels: Sequence[str] | None, iou: float) -> str:
    label = int(dets.labels[i])
    name = labels[label] if labels and 0 <= label < len(labels) else str(label)
    box = ", ".join(f"{v:.0f}" for v in dets.boxes[i].tolist())
    return f"detection #{i}: {name} {float(dets.scores[i]):.2f} at ({box}), IoU {iou:.2f} with the asked box"


def describe(out: Any, target: Detection, labels: Sequence[str] | None = None) -> list[str]:
    """What was explained in each image, e.g. "detection #2: 7 0.81 at (34, 50, 120, 200), IoU
    0.93 with the asked box"; refused in one line, listing the nearest detections, where the
    asked box and label match none."""
    texts = []
    for dets in parse_detections(out):
        found = match(dets, target)
        if found is not None:
            texts.append(_text(dets, found[0], labels, float(found[1])))
            continue
        name = labels[int(target.label)] if labels and int(target.label) < len(labels) else target.label
        box = ", ".join(f"{v:g}" for v in target.box)
        if not len(dets):
            raise BadTarget(f"no detection matches {name} at ({box}): the model detects nothing in "
                            "this image (lower its score threshold, or explain another image)")
        ious = box_iou(_asked(target, dets.boxes), dets.boxes)[0].detach()
        nearest = ious.argsort(descending=True)[:NEAREST].tolist()
        listed = "; ".join(_text(dets, i, labels, float(ious[i])) for i in nearest)
        raise BadTarget(f"no detection matches {name} at ({box}) with IoU >= {target.iou_threshold:g}; "
                        f"nearest: {listed} (ask for one of these boxes and labels, or lower "
                        "iou_threshold)")
    return texts


BoxFormat = Literal["cxcywh", "xyxy"]


def yolo_detections(out: Tensor, *, score_threshold: float = 0.25, nms_iou: float = 0.45,
                    box_format: BoxFormat = "cxcywh", max_detections: int = 100) -> list[dict[str, Tensor]]:
    """The adapter for YOLO-style heads: (B, N, 4 + 1 + C) rows of box, objectness and class
    probabilities (after their sigmoid) -> torchvision's detection format.

    A row's score is objectness x its best class probability (YOLOv5's rule); rows under
    ``score_threshold`` go, then per-class NMS at ``nms_iou``. The scores keep their graph, and
    ``class_scores`` (N, C) keeps each detection's class vector for D-RISE's similarity. Use it as
    ``explain(model, x, target=Detection(...), model_output=yolo_detections)``, or with
    ``functools.partial`` for other thresholds.
    """
    if not isinstance(out, Tensor) or out.ndim != 3 or out.shape[-1] < 6:
        raise BadArgument(f"yolo_detections reads (B, N, 4 + 1 + classes) tensors, not "
                          f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    results = []
    for rows in out:
        box, objectness, probs = rows[:, :4], rows[:, 4], rows[:, 5:]
        if box_format == "cxcywh":
            half = box[:, 2:] / 2
            box = torch.cat([box[:, :2] - half, box[:, :2] + half], 1)
        best, labels = probs.max(1)
        scores = objectness * best
        keep = (scores >= score_threshold).nonzero().reshape(-1)
        kept = keep[batched_nms(box[keep].detach(), scores[keep].detach(), labels[keep], nms_iou)]
        kept = kept[:max_detections]
        results.append({"boxes": box[kept], "labels": labels[kept], "scores": scores[kept],
                        "class_scores": probs[kept], "objectness": objectness[kept]})
    return results
