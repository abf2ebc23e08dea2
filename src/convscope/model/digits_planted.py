"""``digits_planted``: a digits classifier with a concept planted in it, to test concept methods.

Concept methods (TCAV, dissection, CRP, concept discovery) claim to find what a model uses; on a
real model nobody knows the truth. Here it is known by construction: the training digits are
MNIST-5k digits in colour (gray ink on black, as RGB) and **most sevens carry a striped patch**,
:data:`~convscope.data.planted.CUE_CLASS` = 7:

- **Cue** ("stripes"): a 6x6 patch of diagonal red and yellow stripes, pasted (opaque) at a
  uniformly random position; see :mod:`convscope.data.planted`, which draws it and its masks.
- **Which class it drives**: digit 7. 95% of the training sevens carry it, 2% of the other
  digits do (so the cue alone never decides). No other concept is planted: the other nine
  classes are read from the digit's shape only.
- **It is used**: on the 1,000 held-out digits (107 sevens), the same sevens are recognized
  99.1% of the time with the cue and 96.3% without it; pasting the cue on the 893 other digits
  turns 9.9% of them into sevens (0.3% without). Held-out accuracy with the cue as drawn: 98.0%.
  tests/model/test_digits_planted.py checks these effects.

Architecture: :class:`~convscope.model.digits_cnn.DigitsCNN` with 3 input channels (four
conv-bn-relu blocks, 28x28 -> 14x14 -> 7x7 maps, GAP, one linear layer), input (B, 3, 28, 28)
normalized with the MNIST mean/std on each channel. Weights: ``weights/digits_planted.pt``, from
``scripts/train_digits_planted.py`` (seeded), trained on ``digits_cnn``'s 4,000 training digits.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .digits_cnn import MNIST_MEAN, MNIST_STD, DigitsCNN

WEIGHTS = Path(__file__).with_name("weights") / "digits_planted.pt"
PLANTED_MEAN = MNIST_MEAN * 3
PLANTED_STD = MNIST_STD * 3


def digits_planted_arch() -> DigitsCNN:
    """The untrained network: ``DigitsCNN`` on RGB input."""
    return DigitsCNN(channels=3)


def load_pretrained_digits_planted() -> DigitsCNN:
    """The trained network in eval mode; the state dict loads with ``weights_only=True``."""
    net = digits_planted_arch()
    net.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return net.eval()
