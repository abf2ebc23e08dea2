"""Gradients through modified rectifiers: guided backpropagation and the deconvnet.

Guided backprop -- Springenberg, Dosovitskiy, Brox & Riedmiller 2015, "Striving for Simplicity:
    The All Convolutional Net", Sec. 3.4 and Fig. 1: at every rectifier the backward signal R is
    masked by the forward activity *and* by its own sign, R_in = 1[x > 0] * max(R_out, 0).
Deconvnet -- Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks",
    Sec. 2.1: the backward pass rectifies the signal only, R_in = max(R_out, 0), ignoring the
    forward mask; max-unpooling with the forward "switches" is exactly the gradient of max-pool,
    and the "filtering" with transposed filters is the gradient of a convolution.

Both return (B, C, H, W) maps at the input resolution. On a network without a rectifier (SiLU,
GELU, hardswish networks such as EfficientNet-B0, ConvNeXt, ViT) there is nothing for the rule to
act on and the result is the plain gradient: a warning naming the model says so. The rectifier rules come from
:mod:`convscope.model.rules`, which routes every ReLU/ReLU6 call (module, functional, in place)
to the rule -- unlike hooks on ``nn.ReLU`` modules, which miss ``F.relu`` and ``nn.ReLU6`` and
then silently return the plain gradient. For a ReLU6 (EfficientNet-Lite) the forward mask is
``1[0 < x < 6]``.

:class:`LayerGuidedBackprop` explains a unit inside the network instead of a class: the guided
gradient of one channel's mean (or max) activation at one layer w.r.t. the input -- how
Springenberg et al. visualize what a feature responds to (their Fig. 3-5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from ...errors import BadLayer, BadTarget, check_choice, warn
from ...model import Model, forward_until, select, target_indices
from ...model.rules import DECONV, GUIDED, BackwardRule, RuleBlock, backward_rule
from ...model.targets import reads_output
from ...types import OutputTarget, Target
from ..registry import register
from .base import Attribution, input_gradient

ChannelScore = Literal["mean", "max"]


class RuleGradient(Attribution):
    """The input gradient of the target score with :attr:`rule` at every rectifier."""

    rule: ClassVar[BackwardRule]
    needs_rules = True

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        with torch.enable_grad(), backward_rule(self.rule) as block:
            grad, _ = input_gradient(self.model, inputs, target)
        warn_without_rectifier(block, self.model, self.rule.name)
        return grad


def warn_without_rectifier(block: RuleBlock, model: Model, what: str) -> None:
    """One warning when the forward pass ran no rectifier: the rule changed nothing."""
    if block.calls == 0:
        warn(
            f"{what} on {model.name!r}: no rectifier (ReLU, ReLU6, clamp(min=0)) ran in the forward "
            "pass, so the rule had nothing to act on and the map is the plain gradient (method "
            "'gradient'); SiLU, GELU and hardswish are not rectifiers, and TorchScript hides them")


@register("guided_backprop", family="gradient", signed=True)
class GuidedBackprop(RuleGradient):
    """Guided backpropagation (Springenberg et al. 2015): only positive signal through active units."""

    rule = GUIDED


@register("deconvnet", family="gradient", signed=True)
class Deconvnet(RuleGradient):
    """Deconvnet (Zeiler & Fergus 2014): rectified backward signal, forward masks ignored."""

    rule = DECONV


class LayerGuidedBackprop(Attribution):
    """Guided backprop of one channel of one layer: which input pixels excite that feature.

    ``layer`` is a dotted layer name (``"auto"``: the last spatial convolution). The *target*
    picks the channel, not a class: an int channel index, one index per sample, ``"top1"`` (each
    sample's most active channel) or a callable ``(B, channels) -> (B,)`` on the per-channel
    scores. The score of a channel is its ``score="mean"`` (default) or ``"max"`` activation over
    space; the forward pass stops at the layer. Returns (B, C, H, W) at the input resolution.

    Not registered as a method name: its targets are channels, so running it with a class target
    (as ``convscope report`` does for every method) would silently explain an unrelated channel.
    """

    needs_layer = True
    needs_rules = True

    def __init__(self, model: Model, *, layer: str | None = "auto", score: ChannelScore = "mean") -> None:
        super().__init__(model, layer=layer)
        check_choice("score", score, ChannelScore)
        self.score = score

    def channel_scores(self, inputs: Tensor) -> Tensor:
        """(B, channels): each channel's mean or max activation over positions (run to the layer)."""
        assert self.layer is not None
        acts = forward_until(self.model, inputs, self.layer).get(self.layer)
        if acts is None:
            raise BadLayer(f"layer {self.layer!r} was not reached by the forward pass")
        if acts.ndim <= 2:
            return acts
        flat = acts.flatten(2)
        return flat.mean(2) if self.score == "mean" else flat.amax(2)

    def _channels(self, pick: Callable[[Tensor, Target], Any], scores: Tensor, target: Target) -> Any:
        try:
            return pick(scores, target)
        except BadTarget as err:
            raise BadTarget(f"{err} (targets here are channels: layer {self.layer!r} has "
                            f"{scores.shape[1]})") from err

    def fixed_target(self, inputs: Tensor, target: Target) -> Tensor | OutputTarget:
        """Channel indices (B,) read on the unperturbed inputs (wrappers such as SmoothGrad)."""
        if reads_output(target):
            return target
        with torch.no_grad():
            return self._channels(target_indices, self.channel_scores(inputs), target)

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        x = inputs.detach().requires_grad_(True)
        with torch.enable_grad(), backward_rule(GUIDED) as block:
            scores = self._channels(select, self.channel_scores(x), target)
            (grad,) = torch.autograd.grad(scores.sum(), x)
        warn_without_rectifier(block, self.model, GUIDED.name)
        return grad
