"""Tiny hand-written networks in the styles of the torchvision zoo, for layer naming and reading.

Each is seeded and small; the comment on each says which layer ``"auto"`` must pick and why.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Block(nn.Module):
    """ResNet basic block: ONE ``relu`` module called twice, the second after the residual add."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class ResStyle(nn.Module):
    """auto: ``layer2``, the stage output after the last add and ReLU (not ``layer2.0.bn2``)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.layer1 = nn.Sequential(Block(4), Block(4))
        self.layer2 = nn.Sequential(Block(4))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
        for m in self.modules():  # non-trivial batch-norm statistics
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(self.conv1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class DenseStyle(nn.Module):
    """auto: ``features+relu``: the forward applies ``F.relu`` to ``features`` as a function."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.classifier = nn.Linear(6, 3)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.features(x), inplace=True)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class VggStyle(nn.Module):
    """auto: ``features`` (after its last max pool), not ``avgpool``, which only resizes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((3, 3))
        self.classifier = nn.Sequential(nn.Linear(5 * 9, 8), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(8, 3))
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class SqueezeStyle(nn.Module):
    """auto: ``features``, not the class map that the 1x1 head convolution makes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Conv2d(4, 3, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(1))
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class Nested(nn.Module):
    """auto: ``backbone``, the outermost container whose output is the last map."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential()
        self.backbone.add_module("stem", nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()))
        self.backbone.add_module("stage", nn.Sequential(
            nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


class SharedAcross(nn.Module):
    """One activation module registered in two containers (named once, as ``a.1``)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        act = nn.ReLU()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), act)
        self.b = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), act)
        self.fc = nn.Linear(4, 3)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.b(self.a(x)).mean((2, 3)))
