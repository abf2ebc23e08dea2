"""More class activation maps: HiResCAM, XGradCAM, LayerCAM, EigenCAM and EigenGradCAM.

Each is a small class on :class:`.cam_core.ChannelCAM` (one forward, one ``autograd.grad``, the
map at the layer's resolution (B, 1, h, w), ``aug_smooth`` / ``eigen_smooth``); with ``A`` the
activation (B, K, h, w) and ``g = dy^c / dA`` the gradient of the target's score:

* HiResCAM (Draelos & Carin 2020, "Use HiResCAM instead of Grad-CAM for faithful explanations of
  convolutional neural networks", Sec. 3.2): ``L = ReLU(sum_k g^k * A^k)``, the gradient times
  the activation element-wise, summed over channels. Grad-CAM's weights average ``g`` over the
  positions first; HiResCAM keeps each position's own gradient, so on a network whose head is
  ``sum_ij`` of a linear map of ``A`` (GAP + linear) the map sums exactly to the score minus
  the bias (the map's "faithfulness" guarantee).
* XGradCAM (Fu et al. 2020, "Axiom-based Grad-CAM", Eq. 13): channel weights
  ``w_k = sum_ij (A^k_ij / sum_ab A^k_ab) g^k_ij``, the gradient averaged with the activation's
  own weights (``1e-7`` is added to the sum, as pytorch-grad-cam does, so an all-zero channel
  gets weight 0).
* LayerCAM (Jiang et al. 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps for
  Localization", Eq. 6-7): element-wise weights ``w^k_ij = ReLU(g^k_ij)``,
  ``L = ReLU(sum_k w^k * A^k)``. Its point is that the map stays reliable in shallow layers, and
  maps of several layers are fused (``fuse=`` names the extra layers, all read in the same
  forward and backward pass): each is upsampled to the finest grid among them and
  ``fusion="mean"`` averages the maps scaled to [0, 1] and scales the mean again (as
  pytorch-grad-cam aggregates several target layers), ``fusion="max"`` takes the element-wise
  maximum of ``tanh(gamma * L / max L)`` with ``gamma = 2`` (the paper's Eq. 9, as torchcam does).
* EigenCAM (Muhammad & Yeasin 2020, "Eigen-CAM: Class Activation Map using Principal
  Components", Sec. 3): no gradient, no class: the projection of the activations (positions as
  observations, channels centered) on their first principal component, ``L = A V_1``
  (:func:`.cam_core.first_component`, oriented like the channel sum).
* EigenGradCAM (pytorch-grad-cam's variant of EigenCAM): the same projection of HiResCAM's
  ``g * A``, which makes it class-specific.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from ...errors import check_choice
from ...model import Model
from ...model.tokens import GridReshape
from ...types import Target
from ..registry import register
from .cam_core import ChannelCAM, LayerSignal, per_channel, positions, resize_map, scale01

Fusion = Literal["mean", "max"]
XGRAD_EPS = 1e-7
LAYERCAM_GAMMA = 2.0


@register("hirescam", family="cam", needs_layer=True)
class HiResCAM(ChannelCAM):
    """HiResCAM (Draelos & Carin 2020): gradient times activation per position, summed over channels."""

    def weighted(self, signal: LayerSignal, target: Target) -> Tensor:
        assert signal.grads is not None
        return signal.grads * signal.acts


@register("xgradcam", family="cam", needs_layer=True)
class XGradCAM(ChannelCAM):
    """XGradCAM (Fu et al. 2020): channels weighted by their activation-weighted mean gradient."""

    def channel_weights(self, signal: LayerSignal, target: Target) -> Tensor:
        g, a = signal.grads, signal.acts
        assert g is not None
        axes = positions(a)
        return (g * a / (a.sum(axes, keepdim=True) + XGRAD_EPS)).sum(axes, keepdim=True)


@register("layercam", family="cam", needs_layer=True)
class LayerCAM(ChannelCAM):
    """LayerCAM (Jiang et al. 2021): positive gradients as per-position weights; fuses layers.

    ``fuse``: more layers (names, or one text with commas) whose maps are fused with the
    layer's; ``fusion``: ``"mean"`` of the [0, 1]-scaled maps or the paper's ``"max"``.
    """

    def __init__(self, model: Model, *, layer: str = "auto", fuse: str | Sequence[str] | None = None,
                 fusion: Fusion = "mean", relu: bool = True,
                 reshape: GridReshape = None, aug_smooth: bool = False, eigen_smooth: bool = False) -> None:
        super().__init__(model, layer=layer, relu=relu, reshape=reshape, aug_smooth=aug_smooth,
                         eigen_smooth=eigen_smooth)
        names = fuse.split(",") if isinstance(fuse, str) else list(fuse or [])
        picked = [self._resolve_layer(model, n.strip()).name for n in names if n.strip()]
        self.layers = list(dict.fromkeys([self.layer or "auto", *picked]))
        """Every layer read: the layer first, then the fused ones."""
        self.fusion = check_choice("fusion", fusion, Fusion)
        if len(self.layers) > 1:
            self.layer_reason = f"{self.layer_reason}; fused with {', '.join(self.layers[1:])} ({fusion})"

    def weighted(self, signal: LayerSignal, target: Target) -> Tensor:
        assert signal.grads is not None
        return signal.grads.relu() * signal.acts

    def cam_map(self, inputs: Tensor, target: Target) -> Tensor:
        maps = [self.signal_map(s, target) for s in self.layer_signals(inputs, target, self.layers)]
        if len(maps) == 1:
            return maps[0]
        grid = max((m.shape[2:] for m in maps), key=lambda s: s.numel())
        if self.fusion == "max":
            peak = [per_channel(m.flatten(1).amax(1).clamp_min(1e-30)[:, None], m) for m in maps]
            scaled = [torch.tanh(LAYERCAM_GAMMA * m / p) for m, p in zip(maps, peak)]
            return torch.stack([resize_map(m, grid) for m in scaled]).amax(0)
        return scale01(torch.stack([resize_map(scale01(m), grid) for m in maps]).mean(0))


@register("eigencam", family="cam", needs_layer=True)
class EigenCAM(ChannelCAM):
    """EigenCAM (Muhammad & Yeasin 2020): the activations' first principal component; no gradient."""

    uses_gradient = False
    eigen = True

    def weighted(self, signal: LayerSignal, target: Target) -> Tensor:
        return signal.acts


@register("eigengradcam", family="cam", needs_layer=True)
class EigenGradCAM(HiResCAM):
    """EigenGradCAM: the first principal component of gradient times activation."""

    eigen = True
