"""``Model``: a user's network plus what it takes to feed it and read its output.

The wrapper is itself an ``nn.Module`` whose forward is the network's, so any PyTorch tool (and
Captum) can use it directly. It adds the preprocessing (input size, mean, std, channels, and how
an image of another shape is fitted: crop, letterbox or stretch), class labels and a name. Layer
names everywhere are those of the inner network (``model.net``).

Images going in are float tensors in [0, 1], RGB, shape (3, H, W) or (B, 3, H, W), as
:func:`convscope.load_image` returns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import BadArgument, BadImage
from .device import device_of
from .targets import class_index

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


Resize = Literal["crop", "letterbox", "stretch"]
Box = tuple[float, float, float, float]
"""(top, left, bottom, right) in pixels of an original image, bottom/right exclusive."""


@dataclass(frozen=True)
class Preprocess:
    """How raw [0, 1] RGB images become model input: fit to ``input_size``, then normalize.

    ``resize`` says how an image of another shape is fitted, as the model's own preprocessing
    did in training and evaluation:

    * ``"crop"`` (default): the largest centred box with the input's aspect ratio, shrunk to
      ``crop_fraction`` of it, resized to ``input_size``. With the default fraction 1.0 a square
      image is simply resized and a 600x400 photo loses its left and right edges, never its
      proportions; 0.875 is torchvision's "resize 256, centre-crop 224".
    * ``"letterbox"``: the whole image, resized to fit, centred on a border of the mean colour
      (zero after normalization).
    * ``"stretch"``: the whole image squashed to ``input_size`` (aspect ratio lost).

    ``mean``/``std`` default to the ImageNet statistics (their average for one channel).

    ``frames``: for a video (or volume) model that takes (B, C, T, H, W) clips, the clip length
    T of its dry run ("auto" layers, layer tables) and the fewest frames a clip may have;
    ``None`` for image models.
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    channels: int = 3
    resize: Resize = "crop"
    crop_fraction: float = 1.0
    frames: int | None = None

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise BadArgument(f"preprocess channels={self.channels}: only 1 (gray) or 3 (RGB)")
        size = self.input_size
        if len(size) != 2 or any(not isinstance(n, int) or n < 1 for n in size):
            raise BadArgument(f"preprocess input_size={size!r}: give (height, width) in pixels")
        gray = self.channels == 1
        if not self.mean:
            object.__setattr__(self, "mean", (sum(IMAGENET_MEAN) / 3,) if gray else IMAGENET_MEAN)
        if not self.std:
            object.__setattr__(self, "std", (sum(IMAGENET_STD) / 3,) if gray else IMAGENET_STD)
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise BadArgument(f"preprocess mean/std need {self.channels} values each")
        if any(s <= 0 for s in self.std):
            raise BadArgument("preprocess std values must be positive")
        if self.resize not in get_args(Resize):
            raise BadArgument(f"preprocess resize={self.resize!r}: use 'crop', 'letterbox' or 'stretch'")
        if not 0 < self.crop_fraction <= 1:
            raise BadArgument(f"preprocess crop_fraction={self.crop_fraction}: use a value in (0, 1]")
        if self.frames is not None and (not isinstance(self.frames, int) or self.frames < 1):
            raise BadArgument(f"preprocess frames={self.frames!r}: the clip length of a video model, "
                              "a positive integer (None for an image model)")

    def box(self, height: int, width: int) -> Box:
        """The region of a ``height`` x ``width`` image that becomes the model input.

        ``"crop"``: a box inside the image; ``"letterbox"``: a box around it (the border);
        ``"stretch"``: the image itself. The model input is this box resized to ``input_size``.
        """
        (h, w), (h0, w0) = self.input_size, (height, width)
        if self.resize == "stretch":
            return (0.0, 0.0, float(h0), float(w0))
        if self.resize == "crop":
            bh = max(1, round(self.crop_fraction * min(h0, w0 * h / w)))
            bw = max(1, min(w0, round(bh * w / h)))
            top, left = round((h0 - bh) / 2), round((w0 - bw) / 2)
            return (float(top), float(left), float(top + bh), float(left + bw))
        nh, nw = _letterbox_size(self.input_size, h0, w0)
        pad_top, pad_left = (h - nh) // 2, (w - nw) // 2
        sy, sx = h0 / nh, w0 / nw
        return (-pad_top * sy, -pad_left * sx, (h - pad_top) * sy, (w - pad_left) * sx)

    def fit(self, image: Tensor) -> Tensor:
        """One (3, H, W) image in [0, 1] -> (3, *input_size), as :attr:`resize` says."""
        h0, w0 = image.shape[-2:]
        top, left, bottom, right = self.box(h0, w0)
        if self.resize == "letterbox":
            nh, nw = _letterbox_size(self.input_size, h0, w0)
            inner = _resized(image, (nh, nw))
            fill = torch.tensor(self.mean, dtype=image.dtype, device=image.device)
            out = fill.view(-1, 1, 1).expand(3, *self.input_size).clone()
            pad_top, pad_left = (self.input_size[0] - nh) // 2, (self.input_size[1] - nw) // 2
            out[:, pad_top:pad_top + nh, pad_left:pad_left + nw] = inner
            return out
        return _resized(image[:, int(top):int(bottom), int(left):int(right)], self.input_size)


def _letterbox_size(size: tuple[int, int], h0: int, w0: int) -> tuple[int, int]:
    scale = min(size[0] / h0, size[1] / w0)
    return min(size[0], max(1, round(h0 * scale))), min(size[1], max(1, round(w0 * scale)))


def _resized(image: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def _as_batch(images: Tensor | Sequence[Tensor], spec: Preprocess) -> Tensor:
    """Stack image tensors of any sizes into (B, 3, *input_size) float in [0, 1]."""
    size = spec.input_size
    if (isinstance(images, Tensor) and images.ndim == 4 and images.shape[1] in (1, 3)
            and tuple(images.shape[-2:]) == size
            and spec.box(*size) == (0.0, 0.0, float(size[0]), float(size[1]))):
        if images.shape[1] == 1:  # already a batch that the spec leaves as it is
            return images.float().expand(-1, 3, -1, -1).contiguous()
        return images.to(torch.float32, copy=True)  # a new tensor, as from the general path
    return torch.stack([spec.fit(img) for img in _image_list(images)])


def _image_list(images: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """Check and list (3, H, W) float images (gray ones expanded to RGB)."""
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
        out.append(img.expand(3, -1, -1) if img.shape[0] == 1 else img)
    return out


@dataclass(frozen=True)
class Framing:
    """An original image and the box of it that the model saw (see :meth:`Preprocess.box`)."""

    image: Tensor
    """(3, H, W) in [0, 1], at the image's own resolution."""
    box: Box
    input_size: tuple[int, int]

    def image_boxes(self, boxes: Tensor) -> Tensor:
        """(N, 4) boxes (top, left, bottom, right) in model-input pixels -> image pixels,
        clipped to the image (a box on a letterbox border shrinks to the image's edge)."""
        top, left, bottom, right = self.box
        sy = (bottom - top) / self.input_size[0]
        sx = (right - left) / self.input_size[1]
        b = boxes.reshape(-1, 4).float()
        out = torch.stack([top + b[:, 0] * sy, left + b[:, 1] * sx,
                           top + b[:, 2] * sy, left + b[:, 3] * sx], 1)
        h, w = self.image.shape[-2:]
        limit = torch.tensor([h, w, h, w], dtype=out.dtype)
        return out.clamp(min=torch.zeros(4), max=limit).round().long()


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
        self.preprocess_source: str | None = None
        """Where ``spec`` came from when a loader took it from the model's package (timm's data
        config), for the CLI to say; ``None``: given by the caller or convscope's defaults."""

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.spec.input_size

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def frames(self) -> int | None:
        """Clip length T of a video model's (B, C, T, H, W) input; ``None`` for an image model."""
        return self.spec.frames

    @property
    def device(self) -> torch.device:
        return device_of(self.net)

    def resize(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        """Images as the model sees them, before normalization: (B, 3, H, W) in [0, 1]."""
        return _as_batch(images, self.spec)

    def framings(self, images: Tensor | Sequence[Tensor]) -> list[Framing]:
        """Each image with the box of it that :meth:`resize` turns into the model's input."""
        return [Framing(img, self.spec.box(*img.shape[-2:]), self.input_size)
                for img in _image_list(images)]

    def normalize(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) images or (B, 3, T, H, W) clips in [0, 1] -> model input (grayscale
        models get the RGB mean)."""
        if self.channels == 1 and x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        mean, std = self._statistics(x)
        return (x - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """Model input -> [0, 1] pixels (not clamped), the inverse of :meth:`normalize`."""
        mean, std = self._statistics(x)
        return x * std + mean

    def _statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std shaped to broadcast over the channels (dim 1) of ``x``."""
        view = (1, -1) + (1,) * (x.ndim - 2)
        mean = torch.tensor(self.spec.mean, device=x.device, dtype=x.dtype).view(view)
        std = torch.tensor(self.spec.std, device=x.device, dtype=x.dtype).view(view)
        return mean, std

    def preprocess(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        """Resize and normalize images for the network, on the model's device."""
        return self.normalize(self.resize(images).to(self.device))

    def preprocess_clips(self, clips: Tensor | Sequence[Tensor]) -> Tensor:
        """Clips of frames (T, 3, H, W) in [0, 1] (one, a list, or a (B, T, 3, H, W) tensor) ->
        the network's (B, C, T, H, W) input: every frame fitted as :meth:`resize` fits an image.
        A clip with fewer frames than :attr:`frames` is refused, clips of unequal lengths too."""
        parts = [clips] if isinstance(clips, Tensor) and clips.ndim == 4 else list(clips)
        if not parts:
            raise BadImage("no video clips given")
        lengths = {int(c.shape[0]) for c in parts}
        if len(lengths) > 1:
            raise BadImage(f"video clips of {sorted(lengths)} frames: give clips of one length")
        need = self.frames or 1
        if min(lengths) < need:
            raise BadImage(f"video with {min(lengths)} frames: model {self.name!r} needs at least "
                           f"{need}; give a longer clip (or load the model with fewer frames)")
        frames = torch.stack([self.resize(c).transpose(0, 1) for c in parts])  # (B, 3, T, H, W)
        return self.normalize(frames.to(self.device))

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels else f"class {index}"

    def class_index(self, label: str) -> int:
        return class_index(label, self.labels)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_size={self.input_size}"
