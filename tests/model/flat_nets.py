"""Tiny seeded CNNs that leave the feature maps in every way users write, for the fast-path tests.

``FlatNet(how)`` is conv-BN-ReLU-conv(stride 2)-BN-ReLU on a 12x12 input, then the (B, 4, 6, 6)
map becomes 3 logits through ``view``, ``reshape``, ``flatten``, ``einsum``, or a per-image
boolean mask (a data-dependent shape). ``x.view(-1, n)`` cannot run on a channels-last map, so
the fast path must fall back for it. ``Uncopyable`` wraps a network so that the fast path cannot
copy it and runs it as it is: eager, unfolded, NCHW, the reference the fast path must reproduce.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.model import Model, Preprocess

HOWS = ("view", "reshape", "flatten", "einsum", "masked")
SIZE = 12


class FlatNet(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6 if how != "masked" else 4, 3)
        gen = torch.Generator().manual_seed(3)
        for bn in (self.bn1, self.bn2):  # running statistics that make folding change weights
            bn.running_mean.copy_(torch.randn(4, generator=gen) * 0.3)
            bn.running_var.copy_(torch.rand(4, generator=gen) + 0.5)
            bn.weight.data.copy_(torch.rand(4, generator=gen) + 0.5)
            bn.bias.data.copy_(torch.randn(4, generator=gen) * 0.3)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        if self.how == "view":
            return self.fc(h.view(-1, 4 * 6 * 6))
        if self.how == "reshape":
            return self.fc(h.reshape(h.shape[0], -1))
        if self.how == "flatten":
            return self.fc(torch.flatten(h, 1))
        if self.how == "einsum":
            return torch.einsum("bchw,kchw->bk", h, self.fc.weight.view(3, 4, 6, 6)) + self.fc.bias
        rows = []  # "masked": the mean over the positions brighter than the image's average
        for row in h.flatten(2):
            strength = row.sum(0)
            rows.append(row[:, strength >= strength.mean()].mean(1))
        return self.fc(torch.stack(rows))


class Uncopyable(nn.Module):
    """``inner`` behind a module that refuses ``deepcopy``: the fast path runs it as it is."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)

    def __deepcopy__(self, memo: dict) -> Uncopyable:
        raise TypeError("this module cannot be copied")


def flat_net(how: str, seed: int = 0) -> FlatNet:
    torch.manual_seed(seed)
    return FlatNet(how).eval()


def flat_model(how: str, *, eager: bool = False, seed: int = 0) -> Model:
    """``FlatNet(how)`` as a convscope Model; ``eager=True`` behind :class:`Uncopyable`."""
    net: nn.Module = flat_net(how, seed)
    if eager:
        net = Uncopyable(net)
    return Model(net, preprocess=Preprocess(input_size=(SIZE, SIZE)), name=f"flat-{how}")


def flat_inputs(batch: int = 2, seed: int = 1) -> Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
