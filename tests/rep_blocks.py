"""A hand-built RepVGG network (Ding et al. 2021) for the tests: parallel conv + BN branches summed.

Each block computes ``ReLU(BN(conv3x3 x) + BN(conv1x1 x) [+ BN(x)])`` and, like timm's
``RepVggBlock``, offers ``reparameterize()``: the same function as one 3x3 conv with a bias
(the paper's Sec. 3.3), written here from the formulas, not from convscope.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv_bn(c_in: int, c_out: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, bias=False), nn.BatchNorm2d(c_out))


def _fused(kernel: Tensor, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """kernel * g / sigma and beta - mu g / sigma: a conv followed by an eval-mode BN as one conv."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    return kernel * scale[:, None, None, None], bn.bias - bn.running_mean * scale


class RepBlock(nn.Module):
    """ReLU(3x3 conv + BN  +  1x1 conv + BN  [+ BN identity]), mergeable into one 3x3 conv."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_kxk = _conv_bn(c_in, c_out, 3, stride)
        self.conv_1x1 = _conv_bn(c_in, c_out, 1, stride)
        self.identity = nn.BatchNorm2d(c_out) if c_in == c_out and stride == 1 else None
        self.reparam: nn.Conv2d | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.reparam is not None:
            return F.relu(self.reparam(x))
        y = self.conv_1x1(x) + self.conv_kxk(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return F.relu(y)

    def merged(self) -> tuple[Tensor, Tensor]:
        """The one 3x3 kernel and bias the branches sum to."""
        w, b = _fused(self.conv_kxk[0].weight, self.conv_kxk[1])
        w1, b1 = _fused(F.pad(self.conv_1x1[0].weight, (1, 1, 1, 1)), self.conv_1x1[1])
        w, b = w + w1, b + b1
        if self.identity is not None:
            c = self.identity.num_features
            eye = torch.zeros(c, c, 3, 3, dtype=w.dtype)
            eye[torch.arange(c), torch.arange(c), 1, 1] = 1
            wi, bi = _fused(eye, self.identity)
            w, b = w + wi, b + bi
        return w, b

    @torch.no_grad()
    def reparameterize(self) -> None:
        w, b = self.merged()
        conv = self.conv_kxk[0]
        self.reparam = nn.Conv2d(conv.in_channels, conv.out_channels, 3, conv.stride, padding=1,
                                 dtype=w.dtype)
        self.reparam.weight.copy_(w)
        self.reparam.bias.copy_(b)
        del self.conv_kxk, self.conv_1x1, self.identity
        self.identity = None


class FixedBlock(RepBlock):
    """The same block without a merge of its own (a network that does not offer one)."""

    reparameterize = None  # type: ignore[assignment]


class WrongMergeBlock(RepBlock):
    """A merge that forgets the identity branch: not the same function, so it must not be used."""

    @torch.no_grad()
    def reparameterize(self) -> None:
        self.identity = None
        super().reparameterize()


class RepNet(nn.Module):
    """stem conv -> RepVGG blocks (one downsampling, three with an identity branch) -> GAP -> linear."""

    def __init__(self, block: type[RepBlock] = RepBlock, width: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.Sequential(block(width, width, 2), *(block(width, width) for _ in range(3)))
        self.fc = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.blocks(F.relu(self.stem(x))).mean((2, 3)))


def rep_net(block: type[RepBlock] = RepBlock, seed: int = 0) -> RepNet:
    """A seeded RepNet in eval mode with non-trivial BN statistics and affine parameters."""
    torch.manual_seed(seed)
    net = RepNet(block)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(0.1, 0.1)  # timm's RepVggBlock init
                m.bias.normal_(0, 0.1)
        net.train()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None
        net(torch.randn(16, 3, 16, 16))
    return net.eval()
