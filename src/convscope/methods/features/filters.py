"""Convolution filters (weights) prepared for display: tiles in [0, 1] plus what each one is.

A conv weight ``W`` has shape ``(C_out, C_in / groups, kh, kw)``. What a filter "looks like"
depends on the layer, so ``view`` picks one of four readings:

* ``"rgb"`` -- first layers (3 input channels): each filter is one colour tile ``(3, kh, kw)``,
  the kernel as it is applied to the (normalized) R, G, B planes (Krizhevsky et al. 2012,
  Fig. 3; Zeiler & Fergus 2014, Fig. 2 show first-layer filters this way).
* ``"channels"`` -- deeper layers: one grayscale tile per (filter, input channel) pair, so a
  filter is a row of ``C_in / groups`` tiles ``(1, kh, kw)``.
* ``"mean"`` -- the mean over input channels, one grayscale tile per filter (a compact summary;
  it cancels weights of opposite sign, so a flat tile does not mean a weak filter).
* ``"depthwise"`` -- one input channel per filter (``groups == C_in``, weight ``(C, 1, k, k)``):
  one grayscale tile per channel, which is the whole filter.
* ``"gray"`` -- the same tiles for the first layer of a grayscale model (one input channel).

``"auto"`` picks ``gray`` or ``depthwise`` when each filter sees one channel, ``rgb`` when it
sees three and the layer has three inputs, ``channels`` otherwise.

Normalization to [0, 1] is per filter by default (every channel tile of one filter shares its
scale, so their relative strength stays visible): ``"minmax"`` maps the filter's smallest weight
to 0 and largest to 1, ``"symmetric"`` maps 0 to 0.5 and ``±max|w|`` to 1 / 0 so the sign of each
weight can be read. ``scope="layer"`` uses one scale for all filters of the layer instead, so
weak filters look weak. A filter that is zero up to numerical dust is drawn flat mid-gray.

Filters can be sorted (``sort="norm"``: L2 norm ``||W_i||_2`` over all of filter ``i``'s
weights, largest first), capped to ``max_filters`` per page and paged (``page``); sorting
happens before paging, so page 0 holds the strongest filters.

Shapes: ``FilterTiles.tiles`` is ``(N, C, kh, kw)`` float in [0, 1] on the weight's device, with
``C = 3`` (rgb) or ``1``; ``filters``, ``channels`` and ``norms`` are ``(N,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from ...errors import BadArgument, BadLayer
from ...model import get_layer, layer_names

View = Literal["auto", "rgb", "channels", "mean", "depthwise", "gray"]
TileScaling = Literal["minmax", "symmetric"]
Scope = Literal["filter", "layer"]
Sort = Literal["index", "norm"]


@dataclass(frozen=True)
class FilterTiles:
    """One page of a conv layer's filters as display tiles, with their labels."""

    layer: str
    view: str
    """The view actually used (``"auto"`` resolved)."""
    tiles: Tensor
    """(N, C, kh, kw) float in [0, 1]; C = 3 for ``rgb``, else 1."""
    filters: Tensor
    """(N,) long: output-filter index of each tile."""
    channels: Tensor
    """(N,) long: input channel within the filter's group (``channels`` view), else -1."""
    norms: Tensor
    """(N,) L2 norm of the whole filter each tile belongs to."""
    per_filter: int
    """Tiles per filter (``C_in / groups`` in the ``channels`` view, else 1): a grid row length."""
    total_filters: int
    page: int
    pages: int

    @property
    def captions(self) -> list[str]:
        """One label per tile: ``#i`` (and ``c j`` per input channel, else the L2 norm)."""
        out = []
        for f, c, n in zip(self.filters.tolist(), self.channels.tolist(), self.norms.tolist()):
            out.append(f"#{f} c{c}" if c >= 0 else f"#{f} |w|={n:.2f}")
        return out

    @property
    def filter_captions(self) -> list[str]:
        """One label per filter (``#i |w|=norm``), in tile order: for grids of whole filters."""
        first = slice(None, None, self.per_filter)
        return [f"#{f} |w|={n:.2f}" for f, n in zip(self.filters[first].tolist(),
                                                      self.norms[first].tolist())]


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the 2-D convolutions in definition order (``named_modules``)."""
    return [n for n in layer_names(model) if isinstance(get_layer(model, n), nn.Conv2d)]


def _conv(model: nn.Module, layer: str | None) -> tuple[str, nn.Conv2d]:
    if layer is None or layer == "auto":  # the filters most readable as pictures
        names = conv_layers(model)
        if not names:
            raise BadLayer("the model has no Conv2d layer whose filters could be shown")
        layer = names[0]
    module = get_layer(model, layer)
    if not isinstance(module, nn.Conv2d):
        convs = conv_layers(model)
        hint = f"e.g. {', '.join(convs[:3])}" if convs else "the model has none"
        raise BadLayer(
            f"layer {layer!r} is a {type(module).__name__}, not a Conv2d; filters need a "
            f"convolution ({hint})"
        )
    return layer, module


def _resolve_view(view: View, conv: nn.Conv2d) -> str:
    per_group = conv.weight.shape[1]
    if view == "auto":
        if per_group == 1:
            return "gray" if conv.in_channels == 1 else "depthwise"
        return "rgb" if per_group == 3 and conv.in_channels == 3 else "channels"
    if view == "rgb" and per_group != 3:
        raise BadArgument(f"view='rgb' needs filters with 3 input channels, this layer's have "
                          f"{per_group}; use 'channels' or 'mean'")
    if view in ("depthwise", "gray") and per_group != 1:
        raise BadArgument(f"view={view!r} needs one input channel per filter, this layer's "
                          f"have {per_group}; use 'channels' or 'mean'")
    if view not in get_args(View):
        raise BadArgument(f"view={view!r}; use one of {', '.join(get_args(View))}")
    return view


FLAT = 1e-6
"""A filter whose weights span less than this fraction of the layer's largest ``|w|`` is shown
flat mid-gray: stretching numerical dust (pruned filters hold ~1e-9) to full contrast would
draw a pattern that is not there."""


def _to_unit(w: Tensor, normalize: TileScaling, scope: Scope) -> Tensor:
    """Scale ``(F, ...)`` weights to [0, 1] per filter (``scope='filter'``) or all together."""
    flat = w.flatten(1) if scope == "filter" else w.reshape(1, -1)
    floor = FLAT * w.abs().max()
    if normalize == "minmax":
        lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
        span = hi - lo
        out = torch.where(span > floor, (flat - lo) / span.clamp_min(1e-30),
                          torch.full_like(flat, 0.5))
    elif normalize == "symmetric":
        m = flat.abs().amax(1, keepdim=True)
        out = torch.where(m > floor, 0.5 + 0.5 * flat / m.clamp_min(1e-30),
                          torch.full_like(flat, 0.5))
    else:
        raise BadArgument(f"normalize={normalize!r}; use 'minmax' or 'symmetric'")
    return out.clamp(0, 1).reshape(w.shape)


def filter_tiles(
    model: nn.Module,
    layer: str | None = None,
    *,
    view: View = "auto",
    normalize: TileScaling = "minmax",
    scope: Scope = "filter",
    sort: Sort = "index",
    max_filters: int | None = 64,
    page: int = 0,
    max_channels: int | None = None,
) -> FilterTiles:
    """Display tiles for one page of ``layer``'s filters (default: the first Conv2d).

    ``max_filters`` filters per page (``None``: all), ``page`` counts from 0. In the
    ``channels`` view ``max_channels`` keeps only the first input channels of each filter.
    Reads the weights only (detached copies); the model is not changed.
    """
    if scope not in ("filter", "layer"):
        raise BadArgument(f"scope={scope!r}; use 'filter' or 'layer'")
    if sort not in ("index", "norm"):
        raise BadArgument(f"sort={sort!r}; use 'index' or 'norm'")
    if max_filters is not None and max_filters < 1:
        raise BadArgument(f"max_filters={max_filters}; use a positive number or None")
    if max_channels is not None and max_channels < 1:
        raise BadArgument(f"max_channels={max_channels}; use a positive number or None")
    name, conv = _conv(model, layer)
    resolved = _resolve_view(view, conv)
    w = conv.weight.detach().float()  # (F, C_in/groups, kh, kw); float() copies half weights
    total = w.shape[0]
    norms = w.flatten(1).norm(dim=1)
    order = norms.argsort(descending=True, stable=True) if sort == "norm" else torch.arange(
        total, device=w.device)
    per_page = total if max_filters is None else max_filters
    pages = max(1, math.ceil(total / per_page))
    if not 0 <= page < pages:
        raise BadArgument(f"page={page}; layer {name!r} has {total} filters, {pages} page(s) of "
                          f"{per_page} (pages count from 0)")
    chosen = order[page * per_page:(page + 1) * per_page]
    if resolved == "mean":
        w = w.mean(1, keepdim=True)
    unit = _to_unit(w, normalize, scope)[chosen]  # scale with the whole layer, then select
    n = chosen.numel()
    minus = torch.full((n,), -1, dtype=torch.long, device=w.device)
    if resolved != "channels":
        return FilterTiles(name, resolved, unit, chosen, minus, norms[chosen], 1, total, page, pages)
    cin = unit.shape[1] if max_channels is None else min(max_channels, unit.shape[1])
    tiles = unit[:, :cin].reshape(n * cin, 1, *unit.shape[2:])
    filters = chosen.repeat_interleave(cin)
    channels = torch.arange(cin, device=w.device).repeat(n)
    return FilterTiles(name, resolved, tiles, filters, channels, norms[filters], cin, total, page,
                       pages)
