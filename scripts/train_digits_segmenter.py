"""Train ``digits_segmenter`` on ``digit_scenes`` and save its weights (about 10 min on one core).

    python scripts/train_digits_segmenter.py [--out src/convscope/model/weights/digits_segmenter.pt]

Loss: per-pixel cross-entropy plus a soft Dice term over the 11 classes (background covers
about 97% of the pixels; Dice keeps thin digit strokes from being traded for it). Reports the
mean IoU on held-out scenes (digits never trained on) with
:func:`convscope.data.dense_scores.score_segmenter`. Seeded and deterministic
(``scripts/scene_training.py``); the shipped weights are this script's output with its defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scene_training import arguments, train_save_score
from torch import nn

from convscope.data.dense_scores import score_segmenter
from convscope.data.digit_scenes import CLASS_NAMES, SceneBatch
from convscope.model.digits_dense import SEGMENTER_WEIGHTS, DigitsSegmenter


def loss_of(net: nn.Module, batch: SceneBatch) -> torch.Tensor:
    logits = net(batch.images)
    truth = F.one_hot(batch.masks, len(CLASS_NAMES)).permute(0, 3, 1, 2).float()
    probs = logits.softmax(1)
    overlap = (probs * truth).sum((0, 2, 3))
    dice = (2 * overlap + 1) / (probs.sum((0, 2, 3)) + truth.sum((0, 2, 3)) + 1)
    return F.cross_entropy(logits, batch.masks) + (1 - dice).mean()


def main() -> None:
    args = arguments(__doc__, SEGMENTER_WEIGHTS, steps=800)
    net = DigitsSegmenter()
    train_save_score(net, loss_of, args, score_segmenter, "mIoU")


if __name__ == "__main__":
    main()
