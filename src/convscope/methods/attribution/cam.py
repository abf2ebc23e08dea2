"""Class activation maps: CAM, Grad-CAM, Grad-CAM++ and Guided Grad-CAM.

Every member weighs the K channels of one layer's activation ``A`` (B, K, h, w) and sums them:

    L^c = ReLU( sum_k w_k^c A^k )            -> (B, 1, h, w), at the LAYER's resolution

and the variants differ only in the channel weights ``w`` (B, K, 1, 1), so each is one small
:meth:`ChannelCAM.channel_weights` on top of one shared helper (:class:`ChannelCAM`):

* CAM (Zhou et al. 2016, "Learning Deep Features for Discriminative Localization", Sec. 2): for a
  network ending in global average pooling + one linear layer, ``S_c = sum_k w_k^c GAP(A^k) + b_c``
  and ``M_c(x, y) = sum_k w_k^c A^k(x, y)``; the weights are read from the linear layer, no
  gradient is taken. The paper's map is unrectified (``relu=False`` gives it).
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
* Guided Grad-CAM (Selvaraju et al. 2017, Sec. 3, "Guided Grad-CAM"): guided backprop (B, C, H, W) times
  the Grad-CAM map upsampled bilinearly to the input. It is the one family member returned at
  the INPUT resolution, with the input's channels, because its guided factor is per pixel.

Gradients are taken with ``torch.autograd.grad`` with respect to the captured activation, which
``capture(..., grads=True)`` detaches from the trunk: nothing below the layer is differentiated
and no ``param.grad`` is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import BadLayer, BadModel
from ...model import Model, capture
from ...model.layers import get_layer, unwrap
from ...model.tokens import GridReshape, channels_last, to_grid
from ...types import Target
from ..registry import register
from .base import Attribution
from .guided import GuidedBackprop


@dataclass(frozen=True)
class LayerSignal:
    """What a channel-weight function may read: the layer's activation and the target's score."""

    acts: Tensor
    """(B, K, h, w) activation of the chosen layer (detached)."""
    grads: Tensor | None
    """(B, K, h, w) d score / d activation, or ``None`` for methods that take no gradient."""
    logits: Tensor
    """(B, classes) model output (detached)."""


class ChannelCAM(Attribution):
    """Shared CAM helper: capture one layer, weigh its channels, sum them (see module docstring)."""

    needs_layer = True
    uses_gradient: ClassVar[bool] = True
    """Whether :meth:`channel_weights` needs ``d score / d activation`` (CAM does not)."""

    def __init__(self, model: Model, *, layer: str = "auto", relu: bool = True,
                 reshape: GridReshape = None) -> None:
        """``relu``: keep only the positive evidence (Grad-CAM Eq. 2); ``False`` gives the signed map.
        ``reshape``: how a transformer layer's tokens form a map (:mod:`convscope.model.tokens`)."""
        super().__init__(model, layer=layer)
        self.relu, self.reshape = relu, reshape

    def grid(self, acts: Tensor) -> Tensor:
        """The layer's output as a (B, K, h, w) map (transformer tokens reshaped)."""
        assert self.layer is not None
        last = channels_last(get_layer(self.model, self.layer), unwrap(self.model))
        return to_grid(acts, self.layer, self.reshape, last=last)

    def channel_weights(self, signal: LayerSignal, target: Target) -> Tensor:
        """Channel weights (B, K, 1, 1) for the target's score; one per variant."""
        raise NotImplementedError

    def layer_signal(self, inputs: Tensor, target: Target) -> LayerSignal:
        """One forward pass recording the layer; one ``autograd.grad`` to it when needed."""
        assert self.layer is not None
        grads = None
        with torch.set_grad_enabled(self.uses_gradient):
            with capture(self.model, self.layer, grads=self.uses_gradient) as record:
                logits = self.model(inputs)
            acts = record[self.layer]
            if self.uses_gradient:
                (grads,) = torch.autograd.grad(self.scores(logits, target).sum(), acts,
                                               allow_unused=True)
                grads = torch.zeros_like(acts) if grads is None else grads
        return LayerSignal(self.grid(acts.detach()), None if grads is None else self.grid(grads),
                           logits.detach())

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        """(B, 1, h, w) map at the layer's resolution (``explain`` upsamples it for display)."""
        signal = self.layer_signal(inputs, target)
        if signal.acts.ndim != 4:
            raise BadLayer(f"layer {self.layer!r} gives shape {tuple(signal.acts.shape)}; "
                           "CAM methods need a (B, K, h, w) feature map: choose a convolutional layer")
        weights = self.channel_weights(signal, target)
        cam = (weights * signal.acts).sum(1, keepdim=True)
        return cam.relu() if self.relu else cam


def _no_head(model: Model, layer: str, why: str) -> BadModel:
    return BadModel(
        f"CAM needs a model that ends in global average pooling + one linear layer on layer "
        f"{layer!r}, but {model.name!r} {why}. Use method 'gradcam' (it equals CAM up to scale on "
        "such models and works on any CNN), or fit a GAP + linear head on that layer with "
        "convscope.methods.attribution.retrofit_cam(model, images, labels, classes, layer=...)"
    )


def gap_linear_head(model: Model, layer: str, acts: Tensor, logits: Tensor) -> nn.Linear:
    """The linear layer ``fc`` with ``fc(GAP(acts)) == logits`` on this batch, else ``BadModel``.

    Structure narrows the candidates (a ``nn.Linear`` from K channels to the model's classes);
    the numerical check on the actual batch then proves that nothing but pooling, flattening or
    (eval-mode) dropout sits between the layer and that linear layer, however the forward is
    written.
    """
    if logits.ndim != 2 or acts.ndim != 4:
        raise _no_head(model, layer, f"outputs shape {tuple(logits.shape)} from a "
                       f"{tuple(acts.shape)} layer output")
    channels, classes = acts.shape[1], logits.shape[1]
    linears = [m for m in unwrap(model).modules()
               if isinstance(m, nn.Linear) and (m.in_features, m.out_features) == (channels, classes)]
    if not linears:
        raise _no_head(model, layer, f"has no linear layer from its {channels} channels to "
                       f"its {classes} outputs")
    pooled = acts.mean((2, 3))
    tol = 1e-3 * max(1.0, float(logits.abs().max()))
    for fc in reversed(linears):
        predicted = F.linear(pooled, fc.weight, fc.bias)
        if torch.allclose(predicted, logits, rtol=1e-3, atol=tol):
            return fc
    raise _no_head(model, layer, "computes its logits otherwise (the linear layer on the pooled "
                   "map does not reproduce them)")


@register("cam", family="cam", needs_layer=True)
class CAM(ChannelCAM):
    """CAM (Zhou et al. 2016): the layer's channels weighted by the final linear layer's weights."""

    uses_gradient = False

    def channel_weights(self, signal: LayerSignal, target: Target) -> Tensor:
        assert self.layer is not None
        fc = gap_linear_head(self.model, self.layer, signal.acts, signal.logits)
        # d score / d logits: one-hot for a class target; any other target (a callable) is
        # linearized at the logits, which makes CAM's weights (B, classes) @ (classes, K).
        z = signal.logits.detach().requires_grad_(True)
        with torch.enable_grad():
            (dz,) = torch.autograd.grad(self.scores(z, target).sum(), z)
        return (dz @ fc.weight.detach())[:, :, None, None]


@register("gradcam", family="cam", needs_layer=True)
class GradCAM(ChannelCAM):
    """Grad-CAM (Selvaraju et al. 2017, Eq. 1-2): channels weighted by their mean gradient."""

    def channel_weights(self, signal: LayerSignal, target: Target) -> Tensor:
        assert signal.grads is not None
        return signal.grads.mean((2, 3), keepdim=True)


@register("gradcam_pp", family="cam", needs_layer=True)
class GradCAMPlusPlus(ChannelCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018): positive gradients weighted by closed-form alphas."""

    def channel_weights(self, signal: LayerSignal, target: Target) -> Tensor:
        g, a = signal.grads, signal.acts
        assert g is not None
        g2 = g * g
        denom = 2 * g2 + a.sum((2, 3), keepdim=True) * g2 * g
        # alpha is 0/0 where the gradient vanishes; those positions carry no weight anyway.
        alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1.0), 0.0)
        return (alpha * g.relu()).sum((2, 3), keepdim=True)


@register("guided_gradcam", family="cam", needs_layer=True, signed=True)
class GuidedGradCAM(Attribution):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop x upsampled Grad-CAM, per pixel.

    Unlike the rest of the family it returns (B, C, H, W) at the INPUT resolution.
    """

    needs_layer = True

    def __init__(self, model: Model, *, layer: str = "auto") -> None:
        super().__init__(model, layer=layer)
        self._gradcam = GradCAM(model, layer=self.layer)
        self._guided = GuidedBackprop(model)

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        # Both factors see the same inputs, so "top1" picks the same class in each.
        cam = self._gradcam.attribute(inputs, target)
        cam = F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
        return self._guided.attribute(inputs, target) * cam
