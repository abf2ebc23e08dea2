"""Concept discovery without labels: a layer's activations over a set of images, factorized.

Deep Feature Factorization (Collins et al. 2018, Sec. 3) and CRAFT (Fel et al. 2023, Sec. 3.1)
read a layer's activations ``A`` (N, C, h, w) of N images as N*h*w points in channel space,
(N*h*w, C), and factorize them with non-negative matrix factorization (:mod:`.nmf`):

    A ~= U W,    U (N*h*w, k) >= 0 coefficients,    W (k, C) >= 0 concept bases.

A concept is one row of ``W`` (a direction in channel space every position can use in part);
its map on image n is its column of ``U`` at that image's positions, (h, w): where the image
shows the concept and how strongly. The dataset's top positions of a concept (the largest
coefficients, one per image) give its exemplar patches, cropped at the unit's receptive field
like the atlas's (:mod:`convscope.methods.dataset.patches`).

NMF needs ``A >= 0``, which holds after a ReLU; a layer with negative values is clamped at 0 and
a warning says how much was cut. Shapes: inputs (N, ...) -> maps (N, k, h, w) at the layer's
resolution (upsampling for display is the caller's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import BadArgument, BadLayer, warn
from ...model import capture
from ...model.capture import map_layout
from ...model.guard import guarded
from ...model.layers import resolve_layer
from .nmf import Factorization, Init, nmf

MIN_IMAGES = 2
"""Concepts are what images share: a single image has nothing to compare against."""


@dataclass(frozen=True)
class LayerActivations:
    """A layer's activations over a set of inputs, read in one forward per batch."""

    layer: str
    acts: Tensor
    """(N, C, h, w), clamped at 0."""
    logits: Tensor
    """(N, ...) the model's outputs for the same inputs."""


@dataclass(frozen=True)
class Discovery:
    """Concepts of a layer: its activations, their factorization, each concept's maps."""

    activations: LayerActivations
    factorization: Factorization
    maps: Tensor
    """(N, k, h, w) concept coefficients per image position."""

    @property
    def bases(self) -> Tensor:
        """(k, C) concept directions in channel space, unit norm."""
        return self.factorization.bases

    @property
    def residual(self) -> Tensor:
        """(N, C, h, w) what the concepts leave unexplained: activations - reconstruction."""
        return self.activations.acts - reconstruct(self.maps, self.bases)


def reconstruct(maps: Tensor, bases: Tensor, masks: Tensor | None = None) -> Tensor:
    """Activations (N, C, h, w) from concept maps (N, k, h, w) and bases (k, C); ``masks`` (N, k)
    scales each image's concepts (CRAFT's perturbation of the coefficients)."""
    if masks is not None:
        maps = maps * masks[:, :, None, None].to(maps)
    return torch.einsum("nkhw,kc->nchw", maps, bases.to(maps))


def layer_activations(model: nn.Module, inputs: Tensor, layer: str, *,
                      batch_size: int = 64) -> LayerActivations:
    """Activations (N, C, h, w) of a spatial ``layer`` and the model's outputs, ``batch_size`` at a
    time; negative values are clamped at 0 with a warning (NMF needs non-negative data)."""
    name = resolve_layer(model, layer)
    if inputs.shape[0] < MIN_IMAGES:
        raise BadArgument(f"concept discovery got {inputs.shape[0]} image(s): give at least "
                          f"{MIN_IMAGES} (concepts are what several images share)")
    acts, outs = [], []
    with guarded(model), torch.no_grad(), capture(model, name) as record:
        for start in range(0, inputs.shape[0], max(1, batch_size)):
            chunk = inputs[start:start + max(1, batch_size)]
            outs.append(model(chunk))
            acts.append(spatial_map(model, name, record[name], chunk.shape))
    act = torch.cat(acts).float()
    low = float(act.min())
    if low < 0:
        share = float((act < 0).float().mean())
        warn(f"layer {name!r} has negative activations (min {low:.3g}, {share:.0%} of the "
             "values); NMF needs non-negative ones, so they were clamped at 0: pick a "
             "layer after a ReLU to factorize what the network passes on")
        act = act.clamp_min(0)
    return LayerActivations(name, act, torch.cat(outs))


def spatial_map(model: nn.Module, name: str, out: Tensor, inputs: torch.Size) -> Tensor:
    """A layer's output as the (B, C, h, w) map it is, or a one-line refusal: concepts are
    replaced in the layer's own layout, so only convolutional maps qualify."""
    if out.ndim != 4:
        raise BadLayer(f"layer {name!r} gives {tuple(out.shape[1:])} per image, no spatial map; "
                       "concept discovery needs a convolutional (C, h, w) layer, such as 'auto'")
    if map_layout(model, name, out.shape, inputs).kind != "map":
        raise BadLayer(f"layer {name!r} is not a (B, C, h, w) map (shape {tuple(out.shape)}); "
                       "concept discovery needs a convolutional layer")
    return out.detach()


def discover(activations: LayerActivations, k: int, *, max_iter: int = 1000, tol: float = 1e-7,
             seed: int = 0, init: Init = "nndsvda") -> Discovery:
    """Factorize the activations into ``k`` concepts (module notes), on their device."""
    acts = activations.acts
    n, c, h, w = acts.shape
    if not 1 <= k <= c:
        raise BadArgument(f"k={k} concepts from layer {activations.layer!r} with {c} channels: "
                          f"give k between 1 and {c}")
    matrix = acts.permute(0, 2, 3, 1).reshape(-1, c)
    found = nmf(matrix, k, max_iter=max_iter, tol=tol, seed=seed, init=init)
    maps = found.coefficients.reshape(n, h, w, k).permute(0, 3, 1, 2).contiguous()
    return Discovery(activations, found, maps)


@dataclass(frozen=True)
class TopUnit:
    """Where a concept is strongest in one image: layer position and coefficient."""

    image: int
    y: int
    x: int
    value: float


def top_units(maps: Tensor, count: int) -> list[list[TopUnit]]:
    """Per concept, its ``count`` strongest images (one position each, its peak), best first."""
    n, k, h, w = maps.shape
    peak, where = maps.reshape(n, k, h * w).max(dim=2)  # (N, k)
    best = peak.argsort(dim=0, descending=True)[:max(1, min(count, n))]  # (count, k)
    return [[TopUnit(int(i), int(where[i, j]) // w, int(where[i, j]) % w, float(peak[i, j]))
             for i in best[:, j].tolist() if float(peak[i, j]) > 0] for j in range(k)]
