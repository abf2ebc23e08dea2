"""FullGrad (Srinivas & Fleuret 2019, "Full-Gradient Representation for Neural Network
Visualization", NeurIPS): the input-gradient and every bias-gradient, as one map.

For a network built of affine layers and piecewise-linear activations (ReLU, max-pooling) the
output is exactly the sum of the input-gradient term and one term per bias (Eq. 2, the
full-gradient decomposition, "completeness"):

    f(x) = <grad_x f, x> + sum_l <grad_{b_l} f, b_l>

and a bias's gradient is spread over the positions where the bias was added: for a convolution
or batch norm with output ``o_l`` (B, K, h, w), ``grad_{b_l} f * b_l`` is the map
``(df/do_l) * b_l`` (B, K, h, w) (a batch norm's bias in eval mode is
``beta - mean * gamma / sqrt(var + eps)``). The saliency map (Eq. 4) is

    S(x) = psi(grad_x f * x) + sum_l sum_k psi(df/do_l^k * b_l^k),     psi = scale01(|.|), upsampled

with each channel's absolute map scaled to [0, 1] at its own resolution and upsampled bilinearly
to the input (the official implementation's post-processing, and pytorch-grad-cam's). The layers
are every Conv2d with a bias and every BatchNorm2d with running statistics, as in pytorch-grad-cam;
:meth:`FullGrad.decompose` also returns the linear layers' terms, so the decomposition can be
checked to sum to the score. All of them come from ONE forward and ONE ``autograd.grad`` to the
input and every such layer's output.

Shapes: inputs (B, C, H, W) -> map (B, 1, H, W) at the INPUT resolution (there is no one layer).
``eigen_smooth`` projects the stacked maps (the input's channels, one map per layer, each scaled to
[0, 1]) on their first principal component at 1/8 of the input size, as pytorch-grad-cam does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import warn
from ...model import Model, capture
from ...model.formats import type_name
from ...model.layers import unwrap
from ...types import Target
from ..registry import register
from .cam_core import SmoothedCAM, first_component, resize_map, scale01

MAP_KINDS = ("Conv2d", "BatchNorm2d")
"""Layers whose bias terms are maps of the image (the saliency map's terms)."""
LINEAR_KINDS = ("Linear",)
"""Layers whose bias is added along the last axis (counted in the decomposition only)."""
EIGEN_SHRINK = 8


@dataclass(frozen=True)
class FullGradParts:
    """The full-gradient decomposition of the target's score on a batch."""

    inputs: Tensor
    """(B, C, H, W) input-gradient times input."""
    biases: dict[str, Tensor]
    """Per layer, d score / d output times the bias, shaped as the layer's output."""
    scores: Tensor
    """(B,) the target's score."""

    def total(self) -> Tensor:
        """(B,) the sum of every term: the score itself on a piecewise-linear network."""
        return self.inputs.flatten(1).sum(1) + sum((t.flatten(1).sum(1) for t in self.biases.values()),
                                                   torch.zeros_like(self.scores))


def bias_of(module: nn.Module) -> Tensor | None:
    """The bias a layer adds (a batch norm's in eval mode), or ``None`` if it adds none."""
    kind = type_name(module)
    if kind.startswith("BatchNorm"):
        mean, var = getattr(module, "running_mean", None), getattr(module, "running_var", None)
        eps = getattr(module, "eps", None)  # an exported program's batch norm does not keep it
        if not isinstance(mean, Tensor) or not isinstance(var, Tensor) or eps is None:
            return None  # batch statistics in eval mode (or unknown eps): no known fixed bias
        gamma, beta = getattr(module, "weight", None), getattr(module, "bias", None)
        gamma = gamma if isinstance(gamma, Tensor) else torch.ones_like(mean)
        beta = beta if isinstance(beta, Tensor) else torch.zeros_like(mean)
        return (beta - mean * gamma / torch.sqrt(var + float(eps))).detach()  # type: ignore[arg-type]
    bias = getattr(module, "bias", None)
    return bias.detach() if isinstance(bias, Tensor) and kind in MAP_KINDS + LINEAR_KINDS else None


@register("fullgrad", family="cam")
class FullGrad(SmoothedCAM):
    """FullGrad (Srinivas & Fleuret 2019): input-gradient and all bias-gradients, as one map."""

    needs_hooks = True
    images_only = True
    clips = False

    def __init__(self, model: Model, *, aug_smooth: bool = False, eigen_smooth: bool = False) -> None:
        super().__init__(model, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)

    def _biases(self) -> dict[str, tuple[Tensor, bool]]:
        """Layer name -> (bias, whether it is a map's channel bias) of every layer with one."""
        found, unknown = {}, []
        for name, module in unwrap(self.model).named_modules():
            bias = bias_of(module) if name else None
            if bias is not None:
                found[name] = (bias, type_name(module) in MAP_KINDS)
            elif name and type_name(module).startswith("BatchNorm"):
                unknown.append(name)
        if unknown:
            warn(f"fullgrad: the bias of batch norm(s) {', '.join(unknown[:3])}"
                 f"{' and more' if len(unknown) > 3 else ''} is unknown (no running statistics "
                 "or eps, e.g. in an exported program): their terms are left out of the map")
        return found

    def decompose(self, inputs: Tensor, target: Target) -> FullGradParts:
        """Every term of the full-gradient decomposition, from one forward and one backward."""
        biases = self._biases()
        x = inputs.detach().requires_grad_(True)
        with torch.enable_grad(), capture(self.model, list(biases), grads=True) as record:
            scores = self.scores(self.model(x), target)
        outputs = [record[name] for name in biases]
        grads = torch.autograd.grad(scores.sum(), [x, *outputs], allow_unused=True)
        terms = {}
        for (name, (bias, channels_first)), out, g in zip(biases.items(), outputs, grads[1:]):
            g = torch.zeros_like(out) if g is None else g
            shape = [1, -1] + [1] * (g.ndim - 2) if channels_first else [-1]
            terms[name] = g * bias.to(g).view(shape)
        grad_x = torch.zeros_like(x) if grads[0] is None else grads[0]
        return FullGradParts(grad_x * inputs, terms, scores.detach())

    def cam_map(self, inputs: Tensor, target: Target) -> Tensor:
        parts = self.decompose(inputs, target)
        size = inputs.shape[-2:]
        maps = [scale01(parts.inputs.abs())]  # one per input channel
        maps += [resize_map(scale01(t.abs()).sum(1, keepdim=True), size)
                 for t in parts.biases.values() if t.ndim == 4]
        if not self.eigen_smooth:
            return torch.cat(maps, 1).sum(1, keepdim=True).to(inputs.dtype)
        small = resize_map(scale01(torch.cat(maps, 1)), (size[0] // EIGEN_SHRINK, size[1] // EIGEN_SHRINK))
        return resize_map(scale01(first_component(small)), size).to(inputs.dtype)
