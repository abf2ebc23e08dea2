"""AblationCAM (Desai & Ramaswamy 2020, "Ablation-CAM: Visual Explanations for Deep Convolutional
Network via Gradient-free Localization", WACV, Eq. 2-3): channel weights from forward passes alone.

Channel ``k`` of the layer's activation is set to zero (ablated) and the network is run on from
there; the weight is the fraction of the target's score that is lost:

    w_k^c = (y^c - y^c_k) / y^c,          L^c = ReLU( sum_k w_k^c A^k )

with ``y^c`` the score of the intact input and ``y^c_k`` the score with channel ``k`` ablated.
The B x K ablated passes run in chunks of ``batch_size`` rows, each row one (image, channel)
pair: the chunk's distinct images go in once, and a hook of :func:`convscope.model.capture`
repeats the layer's output for the chunk's rows and multiplies it by a per-row channel mask on
its way down (in the layer's own layout: maps, channels-last maps, tokens), so the network below
the layer runs once per image and chunk, not once per channel (pytorch-grad-cam runs it for
every channel). Constant channels (all zero after a ReLU) change nothing when zeroed and get weight 0
without a pass; ``max_channels`` ablates only the most varied channels of each image
(:class:`.scorecam.ForwardCAM`). A score of exactly 0 leaves the drops undivided.

Shapes: inputs (B, C, H, W) -> map (B, 1, h, w) at the LAYER's resolution.

pytorch-grad-cam replaces the channel by ``min(A) - 1e7`` instead of 0 when the layer's minimum is
not 0 (a layer before its ReLU); this module follows the paper (zero) everywhere, which agrees
with it on layers whose minimum is 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...model import capture
from ...model.capture import map_layout
from ...model.tokens import Layout
from ...types import OutputTarget, Target
from ..registry import register
from .cam_core import LayerSignal, per_channel
from .perturbation import resolve_target
from .scorecam import ForwardCAM

ABLATION_ROWS = 64
"""Ablated rows per forward pass by default: below the layer each pass costs one row per
distinct image, so a chunk of 64 costs little more than its part above the layer."""


@register("ablationcam", family="cam", needs_layer=True)
class AblationCAM(ForwardCAM):
    """AblationCAM (Desai & Ramaswamy 2020): channels weighted by the score lost when each is zeroed.

    Options: ``batch_size`` ablated passes per forward (default per device), ``max_channels``
    to ablate only the most varied channels of each image (default: every non-constant one).
    """

    def channel_weights(self, signal: LayerSignal, target: Target) -> Tensor:
        acts = signal.acts
        target = resolve_target(self.model, signal.logits, target)
        base = self.scores(signal.logits, target).detach().float()  # (B,)
        ablated = base[:, None].repeat(1, acts.shape[1])  # not ablated: no drop
        image, channel = self.channels(acts).nonzero(as_tuple=True)
        if image.numel():
            ablated[image, channel] = self._ablated_scores(signal.inputs, acts.shape[1], image,
                                                           channel, target)
        scale = torch.where(base != 0, base, 1.0)[:, None]
        return per_channel((base[:, None] - ablated) / scale, acts).to(acts.dtype)

    def _ablated_scores(self, inputs: Tensor, channels: int, image: Tensor, channel: Tensor,
                        target: Tensor | OutputTarget) -> Tensor:
        """The target's score of each (image, channel) row with that channel zeroed, (n,).

        Each chunk runs the network up to the layer once per distinct image in it, and the hook
        repeats that output for the chunk's rows before masking them (rows of one image differ
        only from the layer on). A network whose forward cannot take the repeated rows (a batch
        size read from its input) raises, and from then on every row runs whole.
        """
        assert self.layer is not None
        total, out = image.numel(), []
        step = self.step(inputs, ABLATION_ROWS)
        state: dict[str, Tensor | None] = {"keep": None, "rows": None}
        layouts: dict[tuple[int, ...], Layout] = {}
        compact = True

        def ablate(name: str, output: Tensor) -> Tensor:
            keep, rows = state["keep"], state["rows"]
            assert keep is not None
            if rows is not None:  # one output per distinct image: one per row of the chunk
                output = output[rows]
            shape = tuple(output.shape)
            if shape not in layouts:
                layouts[shape] = map_layout(self.model, name, shape, (keep.shape[0], *inputs.shape[1:]),
                                            reshape=self.reshape)
                if rows is not None and layouts[shape].kind == "unfolded":
                    raise _Whole  # batch rows are not images: run every row whole
            return output * layouts[shape].per_channel(keep.to(output))

        with torch.no_grad(), capture(self.model, self.layer, on_output=ablate):
            for start in range(0, total, step):
                b, k = image[start:start + step], channel[start:start + step]
                keep = torch.ones(b.numel(), channels, device=inputs.device)
                keep[torch.arange(b.numel(), device=inputs.device), k] = 0.0
                state["keep"] = keep
                logits = None
                if compact:
                    distinct, state["rows"] = b.unique(return_inverse=True)
                    try:
                        logits = self.model(inputs[distinct])
                        compact = isinstance(logits, Tensor) and logits.shape[0] == b.numel()
                    except Exception:
                        compact = False
                    logits = logits if compact else None
                if logits is None:
                    state["rows"] = None
                    logits = self.model(inputs[b])
                out.append(self.scores(logits, target[b] if isinstance(target, Tensor) else target).float())
                if self.progress is not None:
                    self.progress(start + b.numel(), total)
        return torch.cat(out)


class _Whole(Exception):
    """Raised by the hook when a chunk's rows cannot share the network below the layer."""
