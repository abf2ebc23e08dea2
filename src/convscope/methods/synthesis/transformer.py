"""The image transformation network of fast style transfer (Johnson et al. 2016, Sec. 3.1).

Johnson, Alahi & Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
ECCV 2016, supplementary Table 1, with the two later fixes everyone adopted:

* **instance normalization** instead of batch norm (Ulyanov et al. 2016, "Instance
  Normalization: The Missing Ingredient for Fast Stylization"): the style of one image does not
  depend on the other images of its batch, so train and inference behave the same;
* **upsampling by nearest-neighbour resize + convolution** instead of fractionally strided
  (transposed) convolutions, whose uneven kernel overlap paints a checkerboard (Odena et al.
  2016, "Deconvolution and Checkerboard Artifacts").

Shapes, for an input (B, 3, H, W) in [0, 1] with H, W multiples of 4 and ``w = width``::

    9x9 conv   3 -> w      (B, w, H, W)
    3x3 conv/2 w -> 2w     (B, 2w, H/2, W/2)
    3x3 conv/2 2w -> 4w    (B, 4w, H/4, W/4)
    blocks x residual block (two 3x3 convs, 4w channels)
    up x2 + 3x3 conv 4w -> 2w, up x2 + 3x3 conv 2w -> w
    9x9 conv   w -> 3, sigmoid  (B, 3, H, W) in [0, 1]

Every conv but the last is followed by instance norm (affine) and ReLU; padding is by
reflection, which keeps borders free of the dark frame zero padding teaches. Johnson's defaults
are ``width=32, blocks=5`` (1.7 M parameters); ``width=16, blocks=3`` is a CPU-sized net.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import BadArgument


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


class _ConvNormReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(_conv(cin, cout, kernel, stride), nn.InstanceNorm2d(cout, affine=True),
                         nn.ReLU())


class _Upsample(nn.Sequential):
    """Nearest-neighbour x2, then a 3x3 conv: every output pixel sees the same kernel overlap."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), _ConvNormReLU(cin, cout, 3))


class _Residual(nn.Module):
    """Two 3x3 convs with instance norm; ReLU after the first only (Gross & Wilber 2016)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_ConvNormReLU(channels, channels, 3), _conv(channels, channels, 3),
                                  nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class FastStyleNet(nn.Module):
    """Johnson's transformation network: [0, 1] images in, stylized [0, 1] images out.

    ``net(x)`` needs H and W to be multiples of 4 (and at least 8); :func:`stylize` pads any
    image to that and crops back. ``config`` holds the constructor arguments, which is all a
    checkpoint needs besides the state dict.
    """

    def __init__(self, width: int = 32, blocks: int = 5) -> None:
        super().__init__()
        if not (isinstance(width, int) and isinstance(blocks, int)) or width < 1 or blocks < 0:
            raise BadArgument(f"FastStyleNet(width={width!r}, blocks={blocks!r}): need an integer "
                              "width >= 1 and blocks >= 0")
        self.config = {"width": width, "blocks": blocks}
        w = width
        self.down = nn.Sequential(_ConvNormReLU(3, w, 9), _ConvNormReLU(w, 2 * w, 3, 2),
                                  _ConvNormReLU(2 * w, 4 * w, 3, 2))
        self.res = nn.Sequential(*(_Residual(4 * w) for _ in range(blocks)))
        self.up = nn.Sequential(_Upsample(4 * w, 2 * w), _Upsample(2 * w, w))
        self.out = _conv(w, 3, 9)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % 4 or w % 4 or min(h, w) < 8:
            raise BadArgument(f"FastStyleNet input {h}x{w}: height and width must be multiples of 4 "
                              "and at least 8; use stylize(), which pads and crops back")
        return self.out(self.up(self.res(self.down(2 * x - 1)))).sigmoid()

    def extra_repr(self) -> str:
        return f"width={self.config['width']}, blocks={self.config['blocks']}"


def pad_to_multiple(images: Tensor, multiple: int = 4, minimum: int = 8) -> tuple[Tensor, int, int]:
    """Replicate-pad (B, C, H, W) on the bottom/right to a multiple (and a minimum) size.

    Returns the padded batch and the original (H, W), so the caller can crop back.
    Replicate rather than reflect: reflection cannot pad an image smaller than the pad.
    """
    h, w = images.shape[-2:]
    ph = max(-(-h // multiple) * multiple, minimum) - h
    pw = max(-(-w // multiple) * multiple, minimum) - w
    if ph or pw:
        images = F.pad(images, (0, pw, 0, ph), mode="replicate")
    return images, h, w
