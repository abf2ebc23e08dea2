"""Inside the network: a layer's ``filters``, ``featuremaps`` for an image, and the ``mask`` of
where one channel fires, each as a picture with its numbers (:class:`View`); ``unit_classes``,
the classes one channel supports most (numbers only).

The tensors come from :mod:`convscope.methods.features`; the pictures are drawn by
:mod:`convscope.render.features`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor

from ..errors import BadArgument, BadLayer
from ..methods.features.activations import FeatureMaps, activation_mask, feature_maps
from ..methods.features.classes import channel_effect
from ..methods.features.filters import filter_tiles
from ..model import LayerInfo, Model, get_layer, list_layers
from ..model.layers import LayerRef, ambiguous_call, parse_layer
from ..render import png_bytes
from ..render.features import feature_map_grid, filter_grid, mask_panel
from ..render.notebook import figure_html
from .inputs import ImageSource, as_images


@dataclass
class View:
    """A picture of the inside of the network, its title, and what it shows."""

    picture: Image.Image
    title: str
    summary: dict[str, Any]
    """JSON-ready (no tensors): the layer, the channels shown and their numbers."""
    result: Any
    """The method's own dataclass (tiles, maps or mask tensors)."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self.picture)

    def _repr_html_(self) -> str:  # the title is drawn on the picture already
        return figure_html(self.picture, alt=self.title)


def _pixels(model: Model, source: ImageSource) -> tuple[Tensor, Tensor]:
    """(pixels (1,3,H,W) in [0,1] as the model sees them, normalized model input)."""
    pixels = model.resize(as_images(source)).to(model.device)
    return pixels, model.normalize(pixels)


def filters(model: Model, layer: str | None = None, *, view: str = "auto", sort: str = "index",
            normalize: Literal["minmax", "symmetric"] = "minmax", max_filters: int | None = 64,
            page: int = 0) -> View:
    """A conv layer's filters (weights) as a tile grid (``layer`` None: the first conv)."""
    ft = filter_tiles(model, layer, view=view, sort=sort, normalize=normalize,  # type: ignore[arg-type]
                      max_filters=max_filters, page=page)
    k = tuple(ft.tiles.shape[-2:])
    shown = len(ft.filter_captions)
    paged = f", page {ft.page + 1}/{ft.pages}" if ft.pages > 1 else ""
    title = (f"{model.name} {ft.layer}: {shown} of {ft.total_filters} filters{paged}, {ft.view} "
             f"view, {k[0]}x{k[1]} kernels (one square per weight), {normalize} per filter; "
             "|w| = L2 norm")
    picture = filter_grid(ft.tiles, ft.filter_captions, per_filter=ft.per_filter, title=title)
    summary = {"layer": ft.layer, "view": ft.view, "kernel": list(k),
               "filters": ft.filters[::ft.per_filter].tolist(),
               "total_filters": ft.total_filters, "page": ft.page, "pages": ft.pages}
    return View(picture, title, summary, ft)


def featuremaps(model: Model, image: ImageSource, layer: str, *, sort: str = "mean", top: int = 16,
                scale: Literal["channel", "shared"] = "channel", name: str | None = None) -> View:
    """A layer's feature maps for one image, the ``top`` channels by ``sort`` (or the first)."""
    name = name or str(image)
    pixels, x = _pixels(model, image)
    fm = feature_maps(model, x, layer, sort=sort, top=top)  # type: ignore[arg-type]
    h, w = fm.maps.shape[-2:]
    order = f"top {len(fm.channels)} by {sort}" if sort != "none" else f"first {len(fm.channels)}"
    how = "each map on its own colour scale" if scale == "channel" else "one colour scale"
    title = f"{fm.layer} on {name}: {order} of {fm.total_channels} channels ({h}x{w}, {how})"
    picture = feature_map_grid(fm.maps[0], fm.captions(0), scale=scale, title=title,
                               reference=pixels[0], reference_caption=name)
    summary = {"layer": fm.layer, "image": name, "shape": [fm.total_channels, h, w],
               "channels": channel_stats(fm)}
    return View(picture, title, summary, fm)


def channel_stats(fm: FeatureMaps) -> list[dict[str, Any]]:
    """Each channel's mean and max on the first image, in the maps' order (rounded to 4 places)."""
    return [{"channel": c, "mean": round(m, 4), "max": round(mx, 4)}
            for c, m, mx in zip(fm.channels.tolist(), fm.mean[0].tolist(), fm.max[0].tolist())]


def activations(model: Model, image: ImageSource, layer: str) -> FeatureMaps:
    """Every channel's map of ``layer`` for one image, in channel order, with their statistics
    and no picture (for pages that lay the maps out themselves)."""
    return feature_maps(model, _pixels(model, image)[1], layer)


MASK_PANEL = 224
"""Smallest side of a panel of :func:`mask`'s figure (smaller inputs are enlarged, pixelated)."""


def mask(model: Model, image: ImageSource, layer: str, channel: int, *,
         quantile: float | None = None, threshold: float | None = None,
         name: str | None = None) -> View:
    """Where ``channel`` fires on the image: its upsampled activation thresholded (default: the
    top 0.5% of pixels, as in Network Dissection)."""
    name = name or str(image)
    pixels, x = _pixels(model, image)
    am = activation_mask(model, x, layer, channel, quantile=quantile, threshold=threshold)
    t, frac = float(am.threshold[0]), float(am.fraction[0])
    rule = (f"top {100 * (1 - am.quantile):.3g}% of pixels" if am.quantile is not None
            else f"activation >= {t:.3g}")
    h, w = am.raw.shape[-2:]
    title = f"{am.layer} channel {am.channel} on {name}: {rule}"
    captions = ("image", f"activation ({h}x{w}, max {float(am.raw.max()):.2f})",
                f"mask: >= {t:.2f}, {100 * frac:.2f}% of pixels")
    shown = pixels[0].cpu()
    if min(shown.shape[-2:]) < MASK_PANEL:  # a 28 px digit: its panels would cut their captions
        factor = -(-MASK_PANEL // min(shown.shape[-2:]))
        shown = torch.nn.functional.interpolate(shown[None], scale_factor=factor, mode="nearest")[0]
    picture = mask_panel(shown, am.activation[0], am.mask[0], captions=captions, title=title)
    summary = {"layer": am.layer, "channel": am.channel, "image": name, "quantile": am.quantile,
               "threshold": t, "fraction": frac}
    return View(picture, title, summary, am)


@dataclass
class UnitClasses:
    """The classes a unit supports most: per class the logit's change per unit of the channel's
    mean, from the weights above (``method='weights'``) or gradients at an image."""

    layer: str
    channel: int
    method: Literal["weights", "gradient"]
    reason: str
    classes: list[dict[str, Any]]
    """Top ``k`` by score, largest first: ``{"index", "label", "score"}``, positive scores only."""
    opposed: list[dict[str, Any]]
    """The ``k`` most negative, most negative first (classes the unit argues against); negative
    scores only."""


def unit_classes(model: Model, layer: str, channel: int, k: int = 5, *,
                 image: ImageSource | None = None) -> UnitClasses:
    """The ``k`` classes that ``channel`` of ``layer`` supports most (and opposes most).

    When the layers above are affine (global pooling -> Linear) the scores are their weights
    and the image does not matter; otherwise they are gradients at ``image`` (default: a
    mid-gray image, which says little: pass the image being looked at).
    """
    if k < 1:
        raise BadArgument(f"k={k}; ask for at least one class")
    if image is None:
        x = model.normalize(torch.full((1, 3, *model.input_size), 0.5, device=model.device))
    else:
        x = _pixels(model, image)[1]
    effect = channel_effect(model, x, layer, channel)
    scores = effect.scores.float().cpu()
    k = min(k, scores.numel())

    def rows(order: Tensor, sign: int) -> list[dict[str, Any]]:
        """The first ``k`` of ``order`` whose score has ``sign``: a class the unit raises is
        never listed among those it opposes, nor the reverse (there may be fewer than k)."""
        kept = [i for i in order.tolist() if float(scores[i]) * sign > 0][:k]
        return [{"index": i, "label": model.label(i), "score": round(float(scores[i]), 6)} for i in kept]

    method: Literal["weights", "gradient"] = "weights" if effect.linear else "gradient"
    reason = effect.reason if effect.linear or image is not None else (
        f"{effect.reason}; gradients at a mid-gray image")
    return UnitClasses(effect.layer, channel, method, reason,
                       rows(scores.argsort(descending=True, stable=True), 1),
                       rows(scores.argsort(stable=True), -1))


def find_layer(model: Model, name: str, rows: list[LayerInfo] | None = None) -> LayerInfo:
    """The row of layer ``name`` in ``rows`` (default: ``list_layers(model)``, a dry forward
    pass): its type, parameters and output shape; ``name+relu`` gets its module's row under its
    own name. An unknown name raises :class:`BadLayer` with the closest names, a bare name of a
    module that runs several times one that lists its calls."""
    rows = list_layers(model) if rows is None else rows
    ref = parse_layer(name)
    row = next((r for r in rows if r.name == LayerRef(ref.module, ref.call).name), None)
    if row is not None:
        return replace(row, name=name) if ref.relu else row
    get_layer(model, name)  # an unknown module: "did you mean ..."
    calls = next((r.calls for r in rows if parse_layer(r.name).module == ref.module), 0)
    if ref.call is None and calls > 1:
        raise ambiguous_call(ref.module, calls)
    if ref.call is not None and calls:
        only = f"use {ref.module!r}" if calls == 1 else f"calls are 0..{calls - 1}"
        raise BadLayer(f"layer {name!r}: module {ref.module!r} runs {calls} time(s) per forward "
                       f"pass; {only}")
    raise BadLayer(f"layer {name!r} does not run in the model's forward pass, so it has no "
                   "output to show")
