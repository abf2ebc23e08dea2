"""Train ``digits_detector`` on ``digit_scenes`` and save its weights (about 10 min on one core).

    python scripts/train_digits_detector.py [--out src/convscope/model/weights/digits_detector.pt]

CenterNet's losses (Zhou et al. 2019, Sec. 3): a penalty-reduced focal loss on the class
heatmaps against a Gaussian around each box centre (sigma = box side / 8 in cells, at least
0.5), L1 on the box size (weight 0.1) and on the centre's sub-cell offset, both only at the
centre cell. Reports mAP@0.5 on held-out scenes (digits never trained on) with
:func:`convscope.data.dense_scores.score_detector`. Seeded and deterministic
(``scripts/scene_training.py``); the shipped weights are this script's output with its defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scene_training import arguments, train_save_score
from torch import nn

from convscope.data.dense_scores import score_detector
from convscope.data.digit_scenes import SceneBatch
from convscope.model.digits_dense import (
    DETECTOR_WEIGHTS,
    DIGIT_NAMES,
    HEATMAP,
    OFFSET,
    SIZE,
    STRIDE,
    DigitsDetector,
)


def targets(batch: SceneBatch, cells: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(heatmap (B, 10, h, w), regression (B, 4, h, w): w, h, dx, dy in cells, centre mask (B, h, w))."""
    b, (h, w) = len(batch.boxes), cells
    heat = torch.zeros(b, len(DIGIT_NAMES), h, w)
    regress = torch.zeros(b, 4, h, w)
    centre = torch.zeros(b, h, w, dtype=torch.bool)
    ys, xs = torch.arange(h).float()[:, None], torch.arange(w).float()[None, :]
    for i, (boxes, labels) in enumerate(zip(batch.boxes, batch.labels)):
        for (top, left, bottom, right), label in zip(boxes.tolist(), labels.tolist()):
            cx, cy = (left + right) / 2 / STRIDE, (top + bottom) / 2 / STRIDE
            bw, bh = (right - left) / STRIDE, (bottom - top) / STRIDE
            ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
            sx, sy = max(bw / 8, 0.5), max(bh / 8, 0.5)
            blob = torch.exp(-((xs - ix) ** 2) / (2 * sx**2) - ((ys - iy) ** 2) / (2 * sy**2))
            heat[i, label] = torch.maximum(heat[i, label], blob)
            regress[i, :, iy, ix] = torch.tensor([bw, bh, cx - ix, cy - iy])
            centre[i, iy, ix] = True
    return heat, regress, centre


def loss_of(net: nn.Module, batch: SceneBatch) -> torch.Tensor:
    dense = net(batch.images)  # train mode: the raw heads
    heat, regress, centre = targets(batch, (dense.shape[-2], dense.shape[-1]))
    logits = dense[:, HEATMAP]
    p = logits.sigmoid()
    positive = heat.eq(1).float()
    focal = -(positive * (1 - p) ** 2 * F.logsigmoid(logits)
              + (1 - positive) * (1 - heat) ** 4 * p**2 * F.logsigmoid(-logits)).sum()
    count = max(float(positive.sum()), 1.0)
    size = (dense[:, SIZE] - regress[:, :2]).abs().sum(1)[centre].sum()
    offset = (dense[:, OFFSET] - regress[:, 2:]).abs().sum(1)[centre].sum()
    return (focal + 0.1 * size + offset) / count


def main() -> None:
    args = arguments(__doc__, DETECTOR_WEIGHTS, steps=1000)
    net = DigitsDetector()
    nn.init.constant_(net.heatmap[-1].bias, -2.19)  # a centre prior of 0.1 (CenterNet, Sec. 4)
    train_save_score(net, loss_of, args, score_detector, "mAP@0.5")


if __name__ == "__main__":
    main()
