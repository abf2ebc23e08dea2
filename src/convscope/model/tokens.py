"""Transformer layers read as feature maps: token-to-grid reshapes and a default layer.

CAM methods weigh the channels of a (B, K, h, w) map. A vision transformer's layers give tokens
instead, and pytorch-grad-cam and torchcam read them through a reshape, as here:

* ViT (torchvision ``vit_b_16``): tokens (B, 1 + N, D), a class token first and N = h * w patch
  tokens in row-major order -> (B, D, h, w), the class token dropped. Without a class token
  (B, N, D) with N a square is read the same way.
* Swin (torchvision ``swin_t``): channels-last maps (B, H, W, C) -> (B, C, H, W). A 4-D output is
  taken as channels-last when the layer is a LayerNorm or Linear (they act on the last
  dimension) or any layer but a convolution of a Swin model; any other 4-D output is an
  ordinary (B, C, H, W) map.

``reshape=`` passes it explicitly: a callable (activation -> (B, K, h, w)) or the patch grid
``(h, w)`` (tokens with or without one leading class token, or a channels-last map of that size).

:func:`transformer_layer` is ``layer="auto"`` for transformers: the first LayerNorm of the last
attention block (torchvision ViT ``encoder.layers.encoder_layer_11.ln_1``, Swin
``features.7.1.norm1``), pytorch-grad-cam's choice, whose output still holds every patch token.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor, nn

from ..errors import BadLayer

GridReshape = Callable[[Tensor], Tensor] | tuple[int, int] | None
"""How a layer's output becomes a (B, K, h, w) map; ``None`` detects it (see the module notes)."""


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower()


def transformer_layer(net: nn.Module) -> str | None:
    """The first LayerNorm of the last block holding an attention module and a LayerNorm, or
    ``None`` (no such block: not a transformer, the CNN rule applies)."""
    found = None
    for name, block in net.named_modules():
        children = list(block.named_children())
        norms = [n for n, c in children if type(c) is nn.LayerNorm]
        if name and norms and any(_is_attention(c) for _, c in children):
            found = f"{name}.{norms[0]}"
    return found


def channels_last(module: nn.Module, root: nn.Module) -> bool:
    """Whether ``module`` (a layer of ``root``) gives channels-last (B, H, W, C) maps."""
    if isinstance(module, nn.modules.conv._ConvNd):  # a convolution's output is (B, C, H, W) anywhere
        return False
    if type(module) in (nn.LayerNorm, nn.Linear):  # not subclasses: ConvNeXt's LayerNorm2d is (B, C, H, W)
        return True
    return "swin" in type(root).__name__.lower() or "swin" in type(module).__name__.lower()


def to_grid(acts: Tensor, layer: str, reshape: GridReshape = None, *, last: bool = False) -> Tensor:
    """A layer's output as a (B, K, h, w) map (``last``: a 4-D output is channels-last)."""
    if callable(reshape):
        grid = reshape(acts)
        if not isinstance(grid, Tensor) or grid.ndim != 4 or grid.shape[0] != acts.shape[0]:
            got = tuple(grid.shape) if isinstance(grid, Tensor) else type(grid).__name__
            raise BadLayer(f"reshape for layer {layer!r} returned {got}; it must return (B, K, h, w)")
        return grid
    if reshape is not None:
        h, w = reshape
        if acts.ndim == 4 and tuple(acts.shape[1:3]) == (h, w):
            return acts.permute(0, 3, 1, 2)
        if acts.ndim == 4 and tuple(acts.shape[2:]) == (h, w):
            return acts
        if acts.ndim == 3 and acts.shape[1] in (h * w, h * w + 1):
            return acts[:, -h * w:].reshape(acts.shape[0], h, w, -1).permute(0, 3, 1, 2)
        raise BadLayer(f"reshape={reshape!r} does not fit layer {layer!r}'s output "
                       f"{tuple(acts.shape)}; give the patch grid (h, w) of its tokens")
    if acts.ndim == 4:
        return acts.permute(0, 3, 1, 2) if last else acts
    if acts.ndim == 3:
        tokens = acts.shape[1]
        for patches in (tokens - 1, tokens):  # a class token first, or none
            side = math.isqrt(max(patches, 0))
            if patches > 1 and side * side == patches:
                return acts[:, -patches:].reshape(acts.shape[0], side, side, -1).permute(0, 3, 1, 2)
    raise BadLayer(f"layer {layer!r} gives shape {tuple(acts.shape)}, not a feature map: choose a "
                   "convolutional layer, or pass reshape=(h, w) (the patch grid of its tokens) or a "
                   "callable that returns (B, K, h, w)")
