"""Which classes one channel supports: the change of every logit when the channel rises.

The effect of channel ``k`` of layer ``A`` on class ``c`` is the derivative of the logit along a
uniform rise of the whole channel, ``s_c = d/dt logit_c(A + t 1_k) = sum_yx dlogit_c/dA_k[y,x]``:
the logit's change per unit of the channel's spatial mean (Grad-CAM's weight alpha_k^c times the
map's area, Selvaraju et al. 2017, Eq. 1). When everything above the layer is affine
(:func:`~convscope.model.paths.affine_after`: global pooling -> Linear, as in CAM networks),
``s`` is the weights themselves, the same for every image: ``fc.weight[:, k]`` for GAP -> Linear,
the product of the weight matrices for longer affine heads. Otherwise it is the gradient at the
given images, averaged over the batch.

Through an affine head the scores are ``f(A + 1_k) - f(A)``, exact for any ``A``
(:func:`~convscope.model.paths.rise_response`); this also holds for ``name+relu`` layers, where the
gradient would carry the model's ReLU mask. Otherwise all classes come from one forward and two
backward passes (a Jacobian-vector product by double backward: with ``g(u) = J^T u``,
``d(g . 1_k)/du = J 1_k``), not one backward pass per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import BadArgument, BadLayer
from ...model import capture, guarded, resolve_layer
from ...model.paths import affine_after, rise_response


@dataclass(frozen=True)
class ChannelEffect:
    """Every class's change per unit rise of one channel, and how it was found."""

    layer: str
    channel: int
    scores: Tensor
    """(classes,) d logit_c / d (mean of the channel), averaged over the batch."""
    linear: bool
    """True: the weights above the layer (image-independent); False: gradients at the images."""
    reason: str


def channel_effect(model: nn.Module, inputs: Tensor, layer: str, channel: int) -> ChannelEffect:
    """The effect of ``channel`` of ``layer`` on every logit for model ``inputs`` (B, C, H, W)."""
    if inputs.dim() != 4:
        raise BadArgument(f"inputs of shape {tuple(inputs.shape)}; use a (B,C,H,W) model input")
    name = resolve_layer(model, layer)
    path = affine_after(model, inputs[:1], name)
    with guarded(model), capture(model, name, grads=not path.affine) as record:
        logits = model(inputs)
        acts = record[name]
        if logits.dim() != 2:
            raise BadArgument(f"the model returns shape {tuple(logits.shape)}, not (B, classes) "
                              "logits; class effects need a classifier")
        if acts.dim() < 2:
            raise BadLayer(f"layer {name!r} outputs shape {tuple(acts.shape)}; it has no channels")
        if not 0 <= channel < acts.shape[1]:
            raise BadArgument(f"channel {channel}: layer {name!r} has channels "
                              f"0..{acts.shape[1] - 1}")
        if not path.affine:
            scores = _jvp(logits, acts, channel, name).mean(0)
    if path.affine:  # the head's own map of a unit rise: also right after the model's ReLU
        scores = rise_response(model, inputs[:1], name, channel)[0]
    return ChannelEffect(name, channel, scores, path.affine, path.reason)


def _jvp(logits: Tensor, acts: Tensor, channel: int, name: str) -> Tensor:
    """(B, classes): d logits / dt for ``acts[:, channel] += t``, by double backward."""
    if not logits.requires_grad:
        raise BadLayer(f"the logits do not depend on layer {name!r}; pick a layer below the head")
    rise = torch.zeros_like(acts)
    rise[:, channel] = 1.0
    probe = torch.zeros_like(logits, requires_grad=True)
    (back,) = torch.autograd.grad(logits, acts, probe, create_graph=True)
    (jvp,) = torch.autograd.grad(back, probe, rise, allow_unused=True)
    return (jvp if jvp is not None else torch.zeros_like(logits)).detach()
