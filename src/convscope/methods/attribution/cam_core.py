"""The machinery every class activation map shares: read layers, weigh channels, smooth.

A CAM is a map ``L`` (B, 1, h, w) at a layer's resolution. Each method of the family is one small
class that says how to weigh the K channels of the layer's activation ``A`` (B, K, h, w); the rest
lives here once:

* :meth:`ChannelCAM.layer_signals`: one forward pass recording every layer the method reads (one
  for most, several for LayerCAM's fusion) and, for gradient methods, ONE ``autograd.grad`` to all
  of them; each read as a (B, K, h, w) map through the one reader of :mod:`convscope.model.tokens`.
* :meth:`ChannelCAM.weighted`: the weighted activations ``w * A`` (B, K, h, w); by default the
  channel weights (B, K, 1, 1) of :meth:`ChannelCAM.channel_weights` times ``A``, element-wise
  weights for HiResCAM and LayerCAM.
* the map: the sum over channels, ``L = ReLU(sum_k w_k A^k)``, or with ``eigen_smooth`` the
  projection of the weighted activations on their first principal component
  (:func:`first_component`), rectified the same way (``relu=False`` keeps the sign).
* ``aug_smooth`` (test-time augmentation, as pytorch-grad-cam does it with ttach): the map of the
  input, of its horizontal mirror, and of both multiplied by 0.9 and 1.1 (the six combinations,
  :data:`AUGMENTATIONS`), in ONE batch of 6 B images; each map is mirrored back, scaled to [0, 1]
  (:func:`scale01`) and the six are averaged. The target class is read on the unaugmented input
  (``"top1"`` of a mirrored copy may be another class).

Both options are declared once here, so every member of the family has them and the CLI, the
web explainer and their bounds take them from the option specs (docs/architecture.md, convention 8).

Clips and volumes (B, C, T, H, W): a 3-D CNN's layer reads as ``A`` (B, K, t, h, w); every
pooling over "the positions" is over (t, h, w) (:func:`positions`, :func:`per_channel`), the map
is (B, 1, t, h, w), and :func:`resize_map` upsamples it trilinearly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ...model import Model, capture
from ...model.capture import map_layout
from ...model.targets import detach_output
from ...model.tokens import GridReshape
from ...types import Target
from .base import Attribution

AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple(product((False, True), (1.0, 0.9, 1.1)))
"""(mirrored, factor) of each augmented copy: ttach's HorizontalFlip x Multiply([0.9, 1, 1.1]),
pytorch-grad-cam's default test-time augmentation."""
ORIENT_TOL = 1e-3
"""Below this share of ``|v|_1`` the first component's sum gives no orientation (module notes)."""
SCALE_EPS = 1e-7
"""pytorch-grad-cam's ``scale_cam_image`` divides by ``max - min + 1e-7``; the same here, so a
map whose range is zero scales to 0 and the averages agree with theirs."""


@dataclass(frozen=True)
class LayerSignal:
    """What a channel-weight function may read: the layer's activation and the target's score."""

    acts: Tensor
    """(B, K, h, w) activation of the chosen layer (detached); (B, K, t, h, w) for clips."""
    grads: Tensor | None
    """d score / d activation, shaped as ``acts``, or ``None`` for methods that take no gradient."""
    logits: Tensor
    """(B, classes) model output (detached)."""
    inputs: Tensor
    """(B, C, H, W) the model inputs of the call (perturbation methods rerun the model on them)."""
    layer: str = ""
    """The layer read."""


def positions(x: Tensor) -> tuple[int, ...]:
    """The position axes of a (B, K, h, w) map or a (B, K, t, h, w) volume: what CAMs pool over."""
    return tuple(range(2, x.ndim))


def per_channel(weights: Tensor, like: Tensor) -> Tensor:
    """Weights (B, K) shaped to broadcast over the positions of ``like`` (B, K, ...)."""
    return weights.reshape(*weights.shape[:2], *[1] * (like.ndim - 2))


def scale01(maps: Tensor) -> Tensor:
    """Each map (per sample and channel) shifted and scaled to [0, 1] over its spatial axes."""
    flat = maps.flatten(2)
    low = flat.amin(2, keepdim=True)
    high = (flat - low).amax(2, keepdim=True)
    return ((flat - low) / (high + SCALE_EPS)).view_as(maps)


def resize_map(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Maps (B, C, h, w) at another grid, bilinear as ``explain`` upsamples maps for display (and
    as cv2.resize does, which pytorch-grad-cam uses); volumes (B, C, t, h, w) trilinear, to a
    (T, H, W) ``size``."""
    if tuple(maps.shape[2:]) == tuple(size):
        return maps
    mode = "trilinear" if maps.ndim == 5 else "bilinear"
    return F.interpolate(maps, size=tuple(size), mode=mode, align_corners=False)


def first_component(weighted: Tensor) -> Tensor:
    """Projection of each sample's weighted activations on their first principal component.

    ``weighted`` (B, K, h, w) is read as h*w observations of K channels; after centering each
    channel over the positions, ``M = U S V^T`` (``torch.linalg.svd``, one batched call) and the
    map is ``M v_1`` (B, 1, h, w) (EigenCAM, Muhammad & Yeasin 2020, Sec. 3). A singular vector's
    sign is arbitrary; it is chosen so that the projection correlates positively with the plain
    channel sum ``M 1`` (``<M v, M 1> = s_1^2 <v, 1>``: ``v_1`` sums to a positive number), so the
    smoothed map points the way of the map it smooths and does not flip between devices. Where
    the channel sum carries no direction (``|<v, 1>| <= 1e-3 |v|_1``: a LayerNorm's tokens sum
    to a constant), the largest value of the projection is made positive instead (Seg-Eigen-CAM's
    sign correction, Chung & Ying 2025, Eq. 13).
    """
    b, grid = weighted.shape[0], weighted.shape[2:]
    m = weighted.flatten(2).transpose(1, 2).float().nan_to_num(0.0)  # (B, hw, K)
    m = m - m.mean(1, keepdim=True)
    v = torch.linalg.svd(m, full_matrices=False).Vh[:, 0]  # (B, K)
    projection = (m @ v[:, :, None])[:, :, 0]  # (B, hw)
    total = v.sum(1)
    peak = projection.gather(1, projection.abs().argmax(1, keepdim=True))[:, 0]
    direction = torch.where(total.abs() > ORIENT_TOL * v.abs().sum(1), total, peak)
    sign = torch.where(direction < 0, -1.0, 1.0)[:, None]
    return (projection * sign).view(b, 1, *grid).to(weighted.dtype)


def _repeat_target(target: Target, copies: int) -> Target:
    """The target for ``copies`` stacked copies of the batch (class indices, labels, callables)."""
    if isinstance(target, Tensor) and target.numel() > 1:
        return target.reshape(-1).repeat(copies)
    if isinstance(target, Sequence) and not isinstance(target, str):
        return list(target) * copies
    return target


class SmoothedCAM(Attribution):
    """A CAM with the family's two smoothing options (module notes); :meth:`cam_map` is the map."""

    def __init__(self, model: Model, *, layer: str | None = None, aug_smooth: bool = False,
                 eigen_smooth: bool = False) -> None:
        """``aug_smooth``: average the maps of six mirrored and brightness-scaled copies.
        ``eigen_smooth``: project the weighted activations on their first principal component
        instead of summing them."""
        super().__init__(model, layer=layer)
        self.aug_smooth, self.eigen_smooth = aug_smooth, eigen_smooth

    def cam_map(self, inputs: Tensor, target: Target) -> Tensor:
        """The map (B, 1, h, w) of one batch, without test-time augmentation."""
        raise NotImplementedError

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        if not self.aug_smooth:
            return self.cam_map(inputs, target)
        if isinstance(target, str) and target == "top1":
            target = self.fixed_target(inputs, target)
        copies = torch.cat([(inputs.flip(-1) if mirror else inputs) * factor
                            for mirror, factor in AUGMENTATIONS])
        maps = self.cam_map(copies, _repeat_target(target, len(AUGMENTATIONS)))
        maps = maps.view(len(AUGMENTATIONS), inputs.shape[0], *maps.shape[1:])
        back = torch.stack([m.flip(-1) if mirror else m for (mirror, _), m in zip(AUGMENTATIONS, maps)])
        return scale01(back.flatten(0, 1)).view_as(back).mean(0)


class ChannelCAM(SmoothedCAM):
    """Shared CAM helper: capture the layer, weigh its channels, sum them (module notes)."""

    needs_layer = True
    uses_gradient: ClassVar[bool] = True
    """Whether the weights need ``d score / d activation`` (CAM, Score-CAM, EigenCAM do not)."""
    eigen: ClassVar[bool] = False
    """Always project on the first principal component (EigenCAM, EigenGradCAM)."""

    def __init__(self, model: Model, *, layer: str = "auto", relu: bool = True,
                 reshape: GridReshape = None, aug_smooth: bool = False,
                 eigen_smooth: bool = False) -> None:
        """``relu``: keep only the positive evidence (Grad-CAM Eq. 2); ``False`` gives the signed map.
        ``reshape``: how a transformer layer's tokens form a map (:mod:`convscope.model.tokens`)."""
        super().__init__(model, layer=layer, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        self.relu, self.reshape = relu, reshape

    def channel_weights(self, signal: LayerSignal, target: Target) -> Tensor:
        """Channel weights (B, K, 1, 1) for the target's score ((B, K, 1, 1, 1) for clips); one
        per variant."""
        raise NotImplementedError

    def weighted(self, signal: LayerSignal, target: Target) -> Tensor:
        """Weighted activations (B, K, h, w) whose channel sum is the map."""
        return self.channel_weights(signal, target) * signal.acts

    def layer_signals(self, inputs: Tensor, target: Target, layers: Sequence[str]) -> list[LayerSignal]:
        """One forward pass recording ``layers``; one ``autograd.grad`` to all of them when needed."""
        with torch.set_grad_enabled(self.uses_gradient):
            with capture(self.model, layers, grads=self.uses_gradient) as record:
                logits = self.model(inputs)
            acts = [record[name] for name in layers]
            grads: Sequence[Tensor | None] = [None] * len(acts)
            if self.uses_gradient:
                found = torch.autograd.grad(self.scores(logits, target).sum(), acts, allow_unused=True)
                grads = [torch.zeros_like(a) if g is None else g for a, g in zip(acts, found)]
        signals = []
        for name, a, g in zip(layers, acts, grads):
            # one reader for every layer (model/tokens.py): the same axes for activations and gradients
            layout = map_layout(self.model, name, a.shape, inputs.shape, reshape=self.reshape)
            signals.append(LayerSignal(layout.read(a.detach()), None if g is None else layout.read(g),
                                       detach_output(logits), inputs, name))
        return signals

    def layer_signal(self, inputs: Tensor, target: Target) -> LayerSignal:
        """The signal of the method's one layer."""
        assert self.layer is not None
        return self.layer_signals(inputs, target, [self.layer])[0]

    def signal_map(self, signal: LayerSignal, target: Target) -> Tensor:
        """(B, 1, h, w): the weighted activations summed (or projected), rectified unless ``relu=False``."""
        weighted = self.weighted(signal, target)
        cam = first_component(weighted) if self.eigen or self.eigen_smooth else weighted.sum(1, keepdim=True)
        return cam.relu() if self.relu else cam

    def cam_map(self, inputs: Tensor, target: Target) -> Tensor:
        """(B, 1, h, w) map at the layer's resolution (``explain`` upsamples it for display)."""
        return self.signal_map(self.layer_signal(inputs, target), target)
