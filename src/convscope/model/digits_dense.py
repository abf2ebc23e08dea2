"""``digits_segmenter`` and ``digits_detector``: small dense models of ``digit_scenes`` that ship
with their weights, so dense explanations can be checked against where a digit really is.

Both read a (B, 1, 128, 128) gray scene in [0, 1] (normalization mean 0, std 1: an all-zero
input, the usual baseline, is an empty black canvas) through the same small backbone: conv-bn-relu
blocks at strides 2, 4 and 8 (16, 32, 64 channels), then ``neck``, the stride-8 features
upsampled and added to the stride-4 ones (32 channels, 32x32, receptive field about 75 px: a
whole digit). In plain torch; no torchvision at run time.

- :class:`DigitsSegmenter`: ``neck`` upsampled again and added to the stride-2 features, then
  per-pixel logits (B, 11, 128, 128): channel ``d`` is digit ``d`` (0-9), channel 10 background.
- :class:`DigitsDetector`: CenterNet-style heads on ``neck`` (Zhou et al. 2019, "Objects as
  Points"): per class a centre heatmap, per cell the box size and the centre's sub-cell offset.
  :meth:`DigitsDetector.dense` returns them raw as one (B, 14, 32, 32) tensor, channels
  :data:`HEATMAP` (0-9: class logits, sigmoid = centre score), :data:`SIZE` (10-11: width,
  height in cells of 4 px) and :data:`OFFSET` (12-13: x, y of the centre inside its cell); this is
  what explanations of a detection differentiate. ``forward`` in eval mode decodes them into
  torchvision's detection format (one dict per image: ``boxes`` (N, 4) float ``(x0, y0, x1, y1)``,
  ``labels`` (N,) int64 digits, ``scores`` (N,)); in train mode it returns the raw tensor.

The weights come from ``scripts/train_digits_segmenter.py`` and ``scripts/train_digits_detector.py``
(seeded); both trained on ``digit_scenes`` "train" scenes only.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .boxes import batched_nms
from .digits_cnn import _block

WEIGHTS_DIR = Path(__file__).with_name("weights")
SEGMENTER_WEIGHTS = WEIGHTS_DIR / "digits_segmenter.pt"
DETECTOR_WEIGHTS = WEIGHTS_DIR / "digits_detector.pt"
SCENE_SIZE = 128
SCENE_MEAN = (0.0,)
SCENE_STD = (1.0,)
DIGIT_NAMES = [str(d) for d in range(10)]
SEGMENT_NAMES = [*DIGIT_NAMES, "background"]
"""Segmenter classes: the digits 0-9 at their own index, background last (index 10)."""
STRIDE = 4
"""Input pixels per cell of the detector's heads."""
HEATMAP, SIZE, OFFSET = slice(0, 10), slice(10, 12), slice(12, 14)
"""Channels of :meth:`DigitsDetector.dense`."""


def _down(cin: int, cout: int) -> nn.Sequential:
    """conv 3x3 stride 2 -> batch norm -> ReLU: halves the resolution."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class SceneBackbone(nn.Module):
    """Strides 2, 4, 8 (16, 32, 64 channels) and the stride-4 ``neck`` that adds the stride-8
    features back (upsampled): what both dense models read."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _down(1, 16)
        self.block1 = _block(16, 16)
        self.down2 = _down(16, 32)
        self.block2 = _block(32, 32)
        self.down3 = _down(32, 64)
        self.block3 = _block(64, 64)
        self.block4 = _block(64, 64)
        self.lateral = nn.Conv2d(64, 32, 1)
        self.neck = _block(32, 32)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(stride-2 features (B, 16, H/2, W/2), neck (B, 32, H/4, W/4))."""
        s2 = self.block1(self.stem(x))
        s4 = self.block2(self.down2(s2))
        s8 = self.block4(self.block3(self.down3(s4)))
        up = F.interpolate(self.lateral(s8), size=s4.shape[-2:], mode="nearest")
        return s2, self.neck(s4 + up)


class DigitsSegmenter(nn.Module):
    """Per-pixel logits (B, 11, H, W) of :data:`SEGMENT_NAMES` for a (B, 1, H, W) scene."""

    def __init__(self, classes: int = len(SEGMENT_NAMES)) -> None:
        super().__init__()
        self.backbone = SceneBackbone()
        self.lateral = nn.Conv2d(32, 16, 1)
        self.decoder = _block(16, 16)
        self.classifier = nn.Conv2d(16, classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        s2, neck = self.backbone(x)
        up = F.interpolate(self.lateral(neck), size=s2.shape[-2:], mode="nearest")
        logits = self.classifier(self.decoder(s2 + up))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _head(cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, cout, 1))


class DigitsDetector(nn.Module):
    """Digit detector: ``dense`` raw heads, ``decode`` them, ``forward`` = decode in eval mode.

    ``score_threshold`` drops weaker centres, ``max_detections`` caps each image's list, and
    boxes of one label overlapping by IoU > ``nms_iou`` keep only the best (after the
    CenterNet 3x3 peak test, which already removes most duplicates).
    """

    def __init__(self, classes: int = len(DIGIT_NAMES), score_threshold: float = 0.2,
                 max_detections: int = 20, nms_iou: float = 0.5) -> None:
        super().__init__()
        self.backbone = SceneBackbone()
        self.heatmap = _head(classes)
        self.box = _head(4)
        self.score_threshold = score_threshold
        self.max_detections = max_detections
        self.nms_iou = nms_iou

    def dense(self, x: Tensor) -> Tensor:
        """Raw heads (B, classes + 4, H/4, W/4): heatmap logits, then size, then offset."""
        _, neck = self.backbone(x)
        return torch.cat([self.heatmap(neck), self.box(neck)], 1)

    def decode(self, dense: Tensor, size: tuple[int, int]) -> list[dict[str, Tensor]]:
        """Detections of raw heads, in torchvision's format; ``size`` = (height, width) of the
        input, to clip boxes to. Scores keep their gradient to the heatmap logits, boxes to the
        size and offset channels."""
        classes = dense.shape[1] - 4
        heat = dense[:, :classes].sigmoid()
        peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
        batch, _, h, w = heat.shape
        k = min(self.max_detections * 5, classes * h * w)
        top_scores, top_index = peaks.flatten(1).topk(k, dim=1)
        results = []
        for b in range(batch):
            keep = top_scores[b] >= self.score_threshold
            scores, index = top_scores[b][keep], top_index[b][keep]
            labels, cell = index // (h * w), index % (h * w)
            row, col = cell // w, cell % w
            regress = dense[b, classes:].flatten(1)[:, cell]  # (4, N): w, h, dx, dy in cells
            cx = (col.to(dense.dtype) + regress[2]) * STRIDE
            cy = (row.to(dense.dtype) + regress[3]) * STRIDE
            half_w, half_h = regress[0].clamp(min=0) * STRIDE / 2, regress[1].clamp(min=0) * STRIDE / 2
            boxes = torch.stack([(cx - half_w).clamp(0, size[1]), (cy - half_h).clamp(0, size[0]),
                                 (cx + half_w).clamp(0, size[1]), (cy + half_h).clamp(0, size[0])], 1)
            kept = batched_nms(boxes.detach(), scores.detach(), labels, self.nms_iou)
            kept = kept[: self.max_detections]
            results.append({"boxes": boxes[kept], "labels": labels[kept], "scores": scores[kept]})
        return results

    def forward(self, x: Tensor) -> Tensor | list[dict[str, Tensor]]:  # type: ignore[override]
        dense = self.dense(x)
        if self.training:
            return dense
        return self.decode(dense, (x.shape[-2], x.shape[-1]))


def load_pretrained_digits_segmenter() -> DigitsSegmenter:
    """The trained segmenter in eval mode; the state dict loads with ``weights_only=True``."""
    net = DigitsSegmenter()
    net.load_state_dict(torch.load(SEGMENTER_WEIGHTS, map_location="cpu", weights_only=True))
    return net.eval()


def load_pretrained_digits_detector() -> DigitsDetector:
    """The trained detector in eval mode; the state dict loads with ``weights_only=True``."""
    net = DigitsDetector()
    net.load_state_dict(torch.load(DETECTOR_WEIGHTS, map_location="cpu", weights_only=True))
    return net.eval()
