"""``Model``: a user's network plus what it takes to feed it and read its output.

The wrapper is itself an ``nn.Module`` whose forward is the network's, so any PyTorch tool (and
Captum) can use it directly. It adds the preprocessing (input size, mean, std, channels), class
labels and a name. Layer names everywhere are those of the inner network (``model.net``).

Images going in are float tensors in [0, 1], RGB, shape (3, H, W) or (B, 3, H, W), as
:func:`convscope.load_image` returns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import BadArgument, BadImage
from .device import device_of
from .targets import class_index

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How raw [0, 1] RGB images become model input: resize to ``input_size``, then normalize."""

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise BadArgument(f"preprocess channels={self.channels}: only 1 (gray) or 3 (RGB)")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise BadArgument(f"preprocess mean/std need {self.channels} values each")
        if any(s <= 0 for s in self.std):
            raise BadArgument("preprocess std values must be positive")


def _as_batch(images: Tensor | Sequence[Tensor], size: tuple[int, int]) -> Tensor:
    """Stack image tensors of any sizes into (B, 3, *size) float in [0, 1]."""
    if (isinstance(images, Tensor) and images.ndim == 4 and images.shape[1] in (1, 3)
            and tuple(images.shape[-2:]) == size):  # already a batch at the right size
        if images.shape[1] == 1:
            return images.float().expand(-1, 3, -1, -1).contiguous()
        return images.to(torch.float32, copy=True)  # a new tensor, as from the general path
    if isinstance(images, Tensor):
        parts = [images] if images.ndim == 3 else list(images) if images.ndim == 4 else None
        if parts is None:
            raise BadImage(f"images tensor has shape {tuple(images.shape)}; expected (C,H,W) or (B,C,H,W)")
    else:
        parts = list(images)
        if not parts:
            raise BadImage("no images given")
    out = []
    for img in parts:
        if not isinstance(img, Tensor) or img.ndim != 3 or img.shape[0] not in (1, 3):
            got = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
            raise BadImage(f"image of shape {got}: expected a (3,H,W) tensor; use convscope.load_image")
        img = img.float()
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        if tuple(img.shape[-2:]) != size:
            img = F.interpolate(img[None], size=size, mode="bilinear", antialias=True,
                                align_corners=False)[0].clamp(0, 1)
        out.append(img)
    return torch.stack(out)


class Model(nn.Module):
    """A network with its preprocessing, labels and name; ``model(x)`` runs the network."""

    def __init__(
        self,
        net: nn.Module,
        *,
        preprocess: Preprocess | None = None,
        labels: Sequence[str] | None = None,
        name: str = "custom",
    ) -> None:
        super().__init__()
        self.net = net
        self.spec = preprocess or Preprocess()
        self.labels = list(labels) if labels is not None else None
        self.name = name
        self.training = net.training  # mirror the flag only: net's submodules keep their own

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.spec.input_size

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def device(self) -> torch.device:
        return device_of(self.net)

    def resize(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        """Images as the model sees them, before normalization: (B, 3, H, W) in [0, 1]."""
        return _as_batch(images, self.input_size)

    def normalize(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> model input (grayscale models get the RGB mean)."""
        if self.channels == 1 and x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        mean = torch.tensor(self.spec.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.spec.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """Model input -> [0, 1] pixels (not clamped), the inverse of :meth:`normalize`."""
        mean = torch.tensor(self.spec.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.spec.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return x * std + mean

    def preprocess(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        """Resize and normalize images for the network, on the model's device."""
        return self.normalize(self.resize(images).to(self.device))

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels else f"class {index}"

    def class_index(self, label: str) -> int:
        return class_index(label, self.labels)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_size={self.input_size}"
