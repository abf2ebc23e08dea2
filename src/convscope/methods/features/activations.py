"""Feature maps of one layer and activation masks of one channel (network-dissection style).

``feature_maps`` runs the network only up to ``layer`` (``forward_until``, in eval mode with
frozen parameters and no autograd graph) and returns its output ``A`` of shape ``(B, C, h, w)``
with per-channel statistics over space (mean, max, min). Channels can be sorted by their mean or
max activation and cut to the ``top`` N. With a batch, channels are ranked by the statistic
averaged over the batch, so every sample shows the same channels in the same order.

``activation_mask`` follows Network Dissection (Bau et al. 2017, Sec. 2.2): the activation map
``A_k`` of channel ``k`` is upsampled bilinearly to the input size, ``S_k = up(A_k)``
``(B, 1, H, W)``, and thresholded, ``M_k = S_k >= T_k``. The paper picks ``T_k`` so that
``P(a_k > T_k) = 0.005`` over a whole dataset; here ``quantile=0.995`` computes the same
quantile over each image (``per="image"``) or over the whole batch (``per="batch"``, the
dataset-level threshold of the paper when the batch is the dataset), and ``threshold=T`` takes a
fixed value in the layer's own units. The quantile is taken over the upsampled map ``S_k``
(the paper: over raw activations), so the mask keeps the asked-for fraction of pixels, up to
ties. When the quantile falls on the map's minimum (a dead channel) the mask is empty, not full.

Both read through ``forward_until``, so layer names follow :mod:`convscope.model.layers`:
``name:i`` for one call of a module that runs several times (the bare name is refused),
``name+relu`` for the output after the model's own functional ReLU (DenseNet's ``auto``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import BadArgument
from ...model import forward_until, guarded, resolve_layer
from ...model.capture import layer_map

SortBy = Literal["none", "mean", "max"]
Per = Literal["image", "batch"]


@dataclass(frozen=True)
class FeatureMaps:
    """Selected channels of one layer's output for a batch, with per-channel statistics."""

    layer: str
    maps: Tensor
    """(B, N, h, w) activations of the selected channels, in ``channels`` order."""
    channels: Tensor
    """(N,) long: index of each selected channel in the layer's output."""
    mean: Tensor
    """(B, N) spatial mean of each selected channel."""
    max: Tensor
    """(B, N) spatial maximum."""
    min: Tensor
    """(B, N) spatial minimum."""
    total_channels: int

    def captions(self, sample: int = 0) -> list[str]:
        """``ch k`` with its mean and max for one sample (grid captions)."""
        return [f"ch {c}\nmean {m:.2f} · max {x:.1f}" for c, m, x in
                zip(self.channels.tolist(), self.mean[sample].tolist(), self.max[sample].tolist())]


@dataclass(frozen=True)
class ActivationMask:
    """Where one channel fires above a threshold, at input resolution."""

    layer: str
    channel: int
    mask: Tensor
    """(B, 1, H, W) bool: ``activation >= threshold`` (a quantile on a constant map: empty)."""
    activation: Tensor
    """(B, 1, H, W) the channel's activation upsampled bilinearly to the input size."""
    raw: Tensor
    """(B, 1, h, w) the channel's activation at layer resolution."""
    threshold: Tensor
    """(B,) threshold used for each sample (equal entries with ``per='batch'`` or a value)."""
    quantile: float | None
    """The quantile asked for, or ``None`` when a fixed threshold was given."""

    @property
    def fraction(self) -> Tensor:
        """(B,) fraction of input pixels inside the mask."""
        return self.mask.flatten(1).float().mean(1)


def layer_output(model: nn.Module, inputs: Tensor, layer: str) -> tuple[str, Tensor]:
    """``(name, A)``: the output of ``layer`` for normalized ``inputs`` as the ``(B, C, h, w)``
    map every reader reads (:func:`~convscope.model.capture.layer_map`: tokens and
    channels-last outputs too); other outputs are refused in one line."""
    if inputs.dim() != 4:
        raise BadArgument(f"inputs of shape {tuple(inputs.shape)}; use a (B,C,H,W) model input")
    name = resolve_layer(model, layer)
    with guarded(model), torch.no_grad():
        out = forward_until(model, inputs, name)[name]
    return name, layer_map(model, name, out.detach(), inputs.shape)


def feature_maps(
    model: nn.Module,
    inputs: Tensor,
    layer: str,
    *,
    sort: SortBy = "none",
    top: int | None = None,
    channels: Sequence[int] | None = None,
) -> FeatureMaps:
    """Feature maps of ``layer`` for model ``inputs`` (B, C, H, W), optionally sorted and cut.

    ``channels`` restricts to given channel indices first (kept in that order unless sorted);
    ``sort`` ranks by spatial ``"mean"`` or ``"max"`` (largest first; batch-averaged), ``top``
    keeps the first N after sorting.
    """
    if sort not in ("none", "mean", "max"):
        raise BadArgument(f"sort={sort!r}; use 'none', 'mean' or 'max'")
    if top is not None and top < 1:
        raise BadArgument(f"top={top}; use a positive number of channels")
    name, acts = layer_output(model, inputs, layer)
    total = acts.shape[1]
    if channels is None:
        index = torch.arange(total, device=acts.device)
    else:
        index = torch.as_tensor(list(channels), dtype=torch.long, device=acts.device)
        bad = [c for c in index.tolist() if not 0 <= c < total]
        if bad or index.numel() == 0:
            raise BadArgument(f"channels {bad or '[]'}: layer {name!r} has channels 0..{total - 1}")
    flat = acts.index_select(1, index).float().flatten(2)  # (B, N, h*w)
    mean, mx, mn = flat.mean(2), flat.amax(2), flat.amin(2)
    if sort != "none":
        key = (mean if sort == "mean" else mx).mean(0)
        order = key.argsort(descending=True, stable=True)
    else:
        order = torch.arange(index.numel(), device=acts.device)
    if top is not None:
        order = order[:top]
    return FeatureMaps(name, acts.index_select(1, index[order]), index[order], mean[:, order],
                       mx[:, order], mn[:, order], total)


def _quantile_value(values: Tensor, q: float) -> Tensor:
    """Per-row q-quantile of ``(R, N)`` as a value of the row: the (floor(q*N) + 1)-th smallest,
    so ``>=`` it keeps exactly ``N - floor(q*N)`` values (ties aside).

    ``kthvalue`` rather than ``torch.quantile``, which refuses more than 16M elements (a batch).
    """
    k = min(math.floor(q * values.shape[1]) + 1, values.shape[1])
    return values.kthvalue(k, dim=1).values


def activation_mask(
    model: nn.Module,
    inputs: Tensor,
    layer: str,
    channel: int,
    *,
    quantile: float | None = None,
    threshold: float | None = None,
    per: Per = "image",
) -> ActivationMask:
    """Binary mask of where ``channel`` of ``layer`` fires, at the input's resolution.

    Give ``quantile`` (default 0.995: the top 0.5% of pixels) or a fixed ``threshold``, not
    both. ``per`` chooses whether the quantile is computed per image or over the batch.
    """
    if quantile is not None and threshold is not None:
        raise BadArgument("give quantile or threshold, not both")
    if threshold is None and quantile is None:
        quantile = 0.995
    if quantile is not None and not 0.0 <= quantile < 1.0:
        raise BadArgument(f"quantile={quantile}; use a value in [0, 1), e.g. 0.995 for the top 0.5%")
    if threshold is not None and not math.isfinite(threshold):
        raise BadArgument(f"threshold={threshold}; use a finite number")
    if per not in ("image", "batch"):
        raise BadArgument(f"per={per!r}; use 'image' or 'batch'")
    name, acts = layer_output(model, inputs, layer)
    if not 0 <= channel < acts.shape[1]:
        raise BadArgument(f"channel {channel}: layer {name!r} has channels 0..{acts.shape[1] - 1}")
    raw = acts[:, channel:channel + 1].float()
    up = F.interpolate(raw, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
    flat = up.flatten(1)
    b = flat.shape[0]
    if quantile is None:
        t = flat.new_full((b,), float(threshold))  # type: ignore[arg-type]
    elif per == "image":
        t = _quantile_value(flat, quantile)
    else:
        t = _quantile_value(flat.reshape(1, -1), quantile).expand(b)
    t4 = t[:, None, None, None]
    mask = up >= t4
    if quantile is not None:  # a quantile on the map's floor (dead channel): keep nothing
        floor = flat.amin(1) if per == "image" else flat.amin().expand(b)
        mask = torch.where((t <= floor)[:, None, None, None], up > t4, mask)
    return ActivationMask(name, channel, mask, up, raw, t.clone(), quantile)
