"""Class activation maps: CAM, Grad-CAM, Grad-CAM++ and Guided Grad-CAM.

Every member weighs the K channels of one layer's activation ``A`` (B, K, h, w) and sums them:

    L^c = ReLU( sum_k w_k^c A^k )            -> (B, 1, h, w), at the LAYER's resolution

and the variants differ only in the channel weights ``w`` (B, K, 1, 1), so each is one small
:meth:`ChannelCAM.channel_weights` on top of one shared helper (:class:`ChannelCAM`, in
:mod:`.cam_core` with the family's ``aug_smooth`` and ``eigen_smooth`` options):

* CAM (Zhou et al. 2016, "Learning Deep Features for Discriminative Localization", Sec. 2): for a
  network ending in global average pooling + one linear layer, ``S_c = sum_k w_k^c GAP(A^k) + b_c``
  and ``M_c(x, y) = sum_k w_k^c A^k(x, y)``; the weights are read from the linear layer, no
  gradient is taken. The paper's map is unrectified (``relu=False`` gives it). The same head
  written as a 1x1 convolution from the K channels to the classes followed by global pooling
  (Network-in-Network, SqueezeNet: the original CAM setting) is read the same way, its kernel
  being the (classes, K) weight matrix. At the head's own map (the layer whose C = classes
  channels are pooled straight into the logits, e.g. SqueezeNet's last ReLU, which ``"auto"``
  picks) the weights are the identity: CAM of class c IS channel c of that map.
* Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization", Eq. 1-2): ``alpha_k^c = 1/Z sum_ij dy^c/dA^k_ij`` (Eq. 1),
  ``L = ReLU(sum_k alpha_k^c A^k)`` (Eq. 2). On a GAP + linear network ``dy^c/dA^k_ij = w_k^c / Z``,
  so Grad-CAM is CAM divided by Z = h*w (up to the ReLU): a known identity the tests check.
* Grad-CAM++ (Chattopadhyay et al. 2018, "Grad-CAM++: Generalized Gradient-based Visual
  Explanations for Deep Convolutional Networks"): ``w_k^c = sum_ij alpha_ij^kc ReLU(dY^c/dA^k_ij)``
  (Eq. 5) with the closed-form alphas (Eq. 10). With ``Y^c = exp(S^c)`` and a piecewise-linear
  network the higher derivatives are powers of the first one, ``d^nY/dA^n = exp(S) g^n`` with
  ``g = dS/dA`` (Eq. 17-19), so ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)`` needs one gradient.
  The common factor ``exp(S)`` of the weights is dropped (as in the reference implementations):
  it is a positive per-sample scale that would overflow float32 for logits above ~88.
  pytorch-grad-cam adds 1e-6 to the alphas' denominator; the paper (and this class) does not.
  That absolute guard is not scale-free: at random init, where gradients are about 1e-3, it
  shrinks the weight of weak channels (Pearson r 0.987-0.997 against theirs); with the logits
  scaled by 1000 the maps are equal (tests/zoo/test_cam_family.py).
* Guided Grad-CAM (Selvaraju et al. 2017, Sec. 3, "Guided Grad-CAM"): guided backprop (B, C, H, W) times
  the Grad-CAM map upsampled bilinearly to the input. It is the one family member returned at
  the INPUT resolution, with the input's channels, because its guided factor is per pixel.

Gradients are taken with ``torch.autograd.grad`` with respect to the captured activation, which
``capture(..., grads=True)`` detaches from the trunk: nothing below the layer is differentiated
and no ``param.grad`` is touched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import BadModel
from ...model import Model
from ...model.formats import type_name
from ...model.layers import list_layers, unwrap
from ...types import Target
from ..registry import register
from .base import Attribution
from .cam_core import ChannelCAM, LayerSignal, per_channel, positions, resize_map
from .guided import GuidedBackprop


def _no_head(model: Model, layer: str, why: str) -> BadModel:
    return BadModel(
        f"CAM needs a model that ends in global average pooling + one linear layer (or a 1x1 "
        f"convolution to the classes before the pooling) on layer {layer!r}, but {model.name!r} "
        f"{why}. Use method 'gradcam' (it equals CAM up to scale on such models and works on any "
        "CNN), or fit a GAP + linear head on that layer with "
        "convscope.retrofit_cam(model, folder, layer=...) (fit_cam_head for tensors)"
    )


Head = tuple[Tensor, Tensor | None]
"""A classifier on pooled channels: weight (classes, K) and bias."""


def _head_candidates(model: Model, channels: int, classes: int, like: Tensor) -> list[Head]:
    """(weight (classes, K), bias) of every layer that could map pooled channels to the logits:
    linear layers K -> classes, 1x1 convolutions K -> classes, and the identity when K = classes."""
    found: list[Head] = []
    for m in unwrap(model).modules():
        kind, weight = type_name(m), getattr(m, "weight", None)  # type names: exported programs too
        if not isinstance(weight, Tensor):
            continue
        bias = getattr(m, "bias", None)
        if kind == "Linear" and tuple(weight.shape) == (classes, channels):
            found.append((weight, bias))
        elif (kind in ("Conv2d", "Conv3d") and tuple(weight.shape[:2]) == (classes, channels)
              and all(s == 1 for s in weight.shape[2:])):  # 1x1 (x1), groups == 1
            found.append((weight.flatten(1), bias))
    if channels == classes:
        found.append((torch.eye(classes, dtype=like.dtype, device=like.device), None))
    return found


def _last_spatial_layer(model: Model) -> str | None:
    """The last layer (in execution order) whose output reads as a (K, h, w) map, h * w > 1."""
    rows = [r for r in list_layers(model) if r.order is not None and r.map_shape is not None
            and r.map_shape[1] * r.map_shape[2] > 1]
    return max(rows, key=lambda r: r.order or 0).name if rows else None


def reproduces(pooled: Tensor, weight: Tensor, bias: Tensor | None, logits: Tensor) -> bool:
    """Whether ``pooled @ weight.T + bias`` equals the logits up to rounding, unit by unit.

    The tolerance is relative to the magnitude of the terms each logit sums,
    ``|pooled| @ |weight|.T + |bias|`` (the scale of a dot product's rounding error), not to the
    logits: a head at random init whose logits are ~1e-4 must not pass by an absolute floor, and
    a head that is not the one producing the logits (LeViT averages two) misses by a fraction of
    its terms, far above rounding.
    """
    predicted = F.linear(pooled, weight, bias)
    terms = F.linear(pooled.abs(), weight.abs(), None if bias is None else bias.abs())
    rel = max(1e-4, 16 * torch.finfo(pooled.dtype).eps)
    return bool(((predicted - logits).abs() <= rel * (terms + logits.abs())).all())


def class_head(model: Model, layer: str, acts: Tensor, logits: Tensor) -> Tensor:
    """The weights W (classes, K) with ``W GAP(acts) + b == logits`` on this batch, else ``BadModel``.

    Structure narrows the candidates (a linear layer or 1x1 convolution from K channels to the
    model's classes, or the identity when the layer already has one channel per class); the
    numerical check on the actual batch then proves that nothing but pooling, flattening or
    (eval-mode) dropout sits between the layer and the logits, however the forward is written.
    """
    if logits.ndim != 2 or acts.ndim not in (4, 5):
        raise _no_head(model, layer, f"outputs shape {tuple(logits.shape)} from a "
                       f"{tuple(acts.shape)} layer output")
    channels, classes = acts.shape[1], logits.shape[1]
    candidates = _head_candidates(model, channels, classes, acts)
    if not candidates:
        raise _no_head(model, layer, f"has no linear layer or 1x1 convolution from its {channels} "
                       f"channels to its {classes} outputs")
    pooled = acts.mean(positions(acts))
    for weight, bias in reversed(candidates):
        if reproduces(pooled, weight.to(pooled), None if bias is None else bias.to(pooled), logits):
            return weight.detach()
    raise _no_head(model, layer, "computes its logits otherwise (the linear layer or 1x1 convolution "
                   "on the pooled map does not reproduce them)")


@register("cam", family="cam", needs_layer=True)
class CAM(ChannelCAM):
    """CAM (Zhou et al. 2016): the layer's channels weighted by the classifier's weights.

    The classifier is GAP + linear, or a 1x1 convolution to the classes + GAP (module notes).
    """

    uses_gradient = False

    def __init__(self, model: Model, *, layer: str = "auto", relu: bool = True,
                 aug_smooth: bool = False, eigen_smooth: bool = False) -> None:
        super().__init__(model, layer=layer, relu=relu, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        self._auto = layer == "auto"

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        """With ``layer="auto"`` on a class-map head (SqueezeNet: features, 1x1 conv to the
        classes, ReLU, GAP), the feature stage "auto" picks has no head of its own: CAM then reads
        the map the global pooling averages, the last spatial output of the forward pass."""
        try:
            return super().attribute(inputs, target)
        except BadModel:
            pooled = _last_spatial_layer(self.model) if self._auto else None
            if pooled is None or pooled == self.layer:
                raise
            self.layer = pooled
            self.layer_reason = ("the map the global pooling averages (the feature stage 'auto' "
                                 "picks has no GAP + linear / 1x1-conv head of its own)")
            return super().attribute(inputs, target)

    def channel_weights(self, signal: LayerSignal, target: Target) -> Tensor:
        assert self.layer is not None
        weight = class_head(self.model, self.layer, signal.acts, signal.logits)
        # d score / d logits: one-hot for a class target; any other target (a callable) is
        # linearized at the logits, which makes CAM's weights (B, classes) @ (classes, K).
        z = signal.logits.detach().requires_grad_(True)
        with torch.enable_grad():
            (dz,) = torch.autograd.grad(self.scores(z, target).sum(), z)
        return per_channel(dz @ weight.to(dz), signal.acts)


@register("gradcam", family="cam", needs_layer=True)
class GradCAM(ChannelCAM):
    """Grad-CAM (Selvaraju et al. 2017, Eq. 1-2): channels weighted by their mean gradient."""

    def channel_weights(self, signal: LayerSignal, target: Target) -> Tensor:
        assert signal.grads is not None
        return signal.grads.mean(positions(signal.grads), keepdim=True)


@register("gradcam_pp", family="cam", needs_layer=True)
class GradCAMPlusPlus(ChannelCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018): positive gradients weighted by closed-form alphas."""

    def channel_weights(self, signal: LayerSignal, target: Target) -> Tensor:
        g, a = signal.grads, signal.acts
        assert g is not None
        g2 = g * g
        denom = 2 * g2 + a.sum(positions(a), keepdim=True) * g2 * g
        # alpha is 0/0 where the gradient vanishes; those positions carry no weight anyway.
        alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1.0), 0.0)
        return (alpha * g.relu()).sum(positions(a), keepdim=True)


@register("guided_gradcam", family="cam", needs_layer=True, signed=True)
class GuidedGradCAM(Attribution):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop x upsampled Grad-CAM, per pixel.

    Unlike the rest of the family it returns (B, C, H, W) at the INPUT resolution.
    """

    needs_layer = True
    needs_rules = True

    def __init__(self, model: Model, *, layer: str = "auto", aug_smooth: bool = False,
                 eigen_smooth: bool = False) -> None:
        """``aug_smooth`` and ``eigen_smooth`` smooth the Grad-CAM factor, as for every CAM."""
        super().__init__(model, layer=layer)
        self._gradcam = GradCAM(model, layer=self.layer or "auto", aug_smooth=aug_smooth,
                                eigen_smooth=eigen_smooth)
        self._guided = GuidedBackprop(model)

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        # Both factors see the same inputs, so "top1" picks the same class in each.
        cam = self._gradcam.attribute(inputs, target)
        cam = resize_map(cam, inputs.shape[2:])
        return self._guided.attribute(inputs, target) * cam
