"""A classifier read as a detector, so that tests that run every registered method on a
classifier can run the detection methods (D-RISE) too."""

from __future__ import annotations

import torch
from torch import Tensor

DETECTION_METHODS = {"drise"}
"""Methods that explain only a detector's detections."""


def as_detections(logits: Tensor, side: float = 12.0) -> list[dict[str, Tensor]]:
    """A classifier's (B, classes) output in torchvision's detection format: one detection of the
    whole ``side`` x ``side`` image per sample, its best class with its probability."""
    probs, labels = logits.softmax(1).max(1)
    box = torch.tensor([[0.0, 0.0, side, side]])
    return [{"boxes": box, "labels": labels[i:i + 1], "scores": probs[i:i + 1]} for i in range(len(logits))]


def _class_methods() -> list[str]:
    from convscope.methods.registry import method_names

    return [name for name in method_names() if name not in DETECTION_METHODS]


CLASS_METHODS = _class_methods()
"""Every registered method that explains a class score: what tests of class targets run (the
detection methods have their own, tests/model/test_detections.py)."""
