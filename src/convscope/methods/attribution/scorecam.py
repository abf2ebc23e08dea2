"""Score-CAM (Wang et al. 2020, "Score-CAM: Score-Weighted Visual Explanations for Convolutional
Neural Networks"): CAM channel weights from forward passes alone, no gradient.

Each channel ``A^k`` (h, w) of the chosen layer is upsampled bilinearly to the input size and
min-max normalized to [0, 1] (Eq. 5, ``s(.)``), giving a soft mask ``H^k`` (H, W). The input is
multiplied by it IN PIXEL SPACE, ``normalize(denormalize(x) * H^k)``: the image shows through
where the channel fires and is black elsewhere. The target's score (its logit) on each masked
copy is the channel's evidence; the weights are their softmax over channels (Algorithm 1; the
paper's baseline score ``f(X_b)`` of Eq. 4 is one constant per image and cancels in the softmax):

    alpha_k^c = softmax_k( f^c(x . H^k) ),      L^c = ReLU( sum_k alpha_k^c A^k )   (Eq. 6)

Shapes: inputs (B, C, H, W) -> map (B, 1, h, w) at the LAYER's resolution, like the rest of the
CAM family. Channels whose map is constant carry no spatial information (a ReLU layer has many
all-zero channels): they are not scored and get weight 0. ``max_channels`` keeps only the k
channels of largest spatial variance per image (the "Faster Score-CAM" shortcut) for layers with
thousands of channels. The B x K masked images go through :class:`convscope.model.FastForward`
in chunks of ``batch_size``, each chunk's masks built on the fly. :class:`ForwardCAM` holds these
options once for the forward-only members of the family (AblationCAM too).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...errors import check_positive
from ...model import FastForward, Model, default_batch_size
from ...model.layers import unwrap
from ...model.tokens import GridReshape
from ...types import ProgressFn, Target
from ..registry import register
from .cam_core import ChannelCAM, LayerSignal, per_channel, positions, resize_map
from .flat import warn_unvaried
from .perturbation import resolve_target

INF = float("inf")


class ForwardCAM(ChannelCAM):
    """Shared options of the CAMs whose channel weights come from forward passes alone (Score-CAM,
    AblationCAM): chunk size, the channels scored, progress."""

    uses_gradient = False

    def __init__(self, model: Model, *, layer: str = "auto", batch_size: int | None = None,
                 max_channels: int | None = None, progress: ProgressFn | None = None,
                 relu: bool = True, reshape: GridReshape = None, aug_smooth: bool = False,
                 eigen_smooth: bool = False) -> None:
        super().__init__(model, layer=layer, relu=relu, reshape=reshape, aug_smooth=aug_smooth,
                         eigen_smooth=eigen_smooth)
        if batch_size is not None:
            check_positive("batch_size", batch_size, integer=True)
        if max_channels is not None:
            check_positive("max_channels", max_channels, integer=True)
        self.batch_size, self.max_channels, self.progress = batch_size, max_channels, progress

    def channels(self, acts: Tensor) -> Tensor:
        """(B, K) bool: the channels to score (non-constant, the most varied if limited)."""
        flat = acts.flatten(2)
        keep = flat.amax(2) > flat.amin(2)
        if self.max_channels is not None and self.max_channels < acts.shape[1]:
            spread = flat.var(2).masked_fill(~keep, -INF)
            top = spread.topk(self.max_channels, dim=1).indices
            keep = keep & torch.zeros_like(keep).scatter_(1, top, True)
        return keep

    def step(self, inputs: Tensor, default: int | None = None) -> int:
        """Rows per forward pass: ``batch_size``, else ``default`` or the device's default; an
        exported program's fixed batch where it has one (AblationCAM's hooks cannot see a
        chunked batch)."""
        fixed = getattr(unwrap(self.model), "batch", None)
        if isinstance(fixed, int) and not isinstance(fixed, bool):
            return fixed
        return self.batch_size or default or default_batch_size(inputs.device)


@register("scorecam", family="cam", needs_layer=True)
class ScoreCAM(ForwardCAM):
    """Score-CAM (Wang et al. 2020): channels weighted by the softmax of their masked-input scores.

    Options: ``batch_size`` masked images per pass (default per device), ``max_channels`` to
    score only the most varied channels of each image (default: all non-constant channels).
    """

    def channel_weights(self, signal: LayerSignal, target: Target) -> Tensor:
        acts, inputs = signal.acts, signal.inputs
        target = resolve_target(self.model, signal.logits, target)
        image, channel = self.channels(acts).nonzero(as_tuple=True)  # rows to score, (n,) each
        evidence = torch.full(acts.shape[:2], -INF, device=acts.device)
        if image.numel():
            evidence[image, channel] = self._scores(inputs, acts, image, channel, target,
                                                    self.step(inputs))
        warn_unvaried(self.method_name, evidence, signal.logits, target, probabilities=False)
        weights = evidence.softmax(1).nan_to_num(0.0)  # an image with no channel scored: all 0
        return per_channel(weights, acts).to(acts.dtype)

    def _scores(self, inputs: Tensor, acts: Tensor, image: Tensor, channel: Tensor,
                target: Tensor | object, step: int) -> Tensor:
        """Target score of every (image, channel) masked copy, (n,)."""
        total, out = image.numel(), []
        fast = FastForward(self.model, rows=total)
        described = inputs.shape[1] == self.model.channels  # else masked in model-input space
        pixels = self.model.denormalize(inputs) if described else inputs
        for start in range(0, total, step):
            b, k = image[start:start + step], channel[start:start + step]
            up = resize_map(acts[b, k][:, None].float(), inputs.shape[2:])
            low, high = up.amin(positions(up), keepdim=True), up.amax(positions(up), keepdim=True)
            mask = ((up - low) / (high - low).clamp_min(1e-12)).to(inputs.dtype)
            masked = self.model.normalize(pixels[b] * mask) if described else pixels[b] * mask
            rows_target = target[b] if isinstance(target, Tensor) else target
            out.append(fast.scores(masked, rows_target, batch_size=b.numel()))  # type: ignore[arg-type]
            if self.progress is not None:
                self.progress(start + b.numel(), total)
        return torch.cat(out)
