"""One reader of a layer: any layer's output as a (B, C, h, w) map of the image batch, or a refusal.

Every reader of a layer's maps (the CAM family, Score-CAM, feature maps, masks, ``capture``'s
``map``, the scan, embeddings, the web's layer pages and "auto") goes through
:func:`layout_of`, so none of them reads a layer along other axes than ``explain()`` does. The
layout is decided from the output's shape, the image batch B and size (H, W), and, only where
the shape alone is ambiguous, the module:

* (B, C, h, w) with (h, w) a grid of the image (a common stride, up to rounding, or the image's
  aspect within 1.25x): a convolutional map, read as it is.
* (B, C, t, h, w) with (h, w) a grid of the frames: a 3-D convolution's map of a video or volume
  batch (B, C, T, H, W), read as it is (a "volume": readers pool or upsample over t, h and w).
* (B, h, w, C) with (h, w) a grid of the image and (C, h) not: channels-last (Swin), permuted.
  When both readings fit (C close to h), the module decides: a Linear or a module that
  normalizes over the last dimension (:func:`normalizes_last_dim`) is channels-last.
* (B, P + N, D) tokens, P prefix tokens (class, distillation, register tokens; the root
  module's ``num_prefix_tokens`` when it declares one, else the fewest that leave a grid) and
  N = h * w patch tokens in row-major order, as pytorch-grad-cam and torchcam read ViT tokens:
  -> (B, D, h, w), the prefix dropped.
* (B * p * p, N, D): MobileViT's unfolded patches (Mehta & Rastegari 2022, Sec. 3.1): the p x p
  positions within each patch folded into the batch, N patches, in the order of timm's and
  Apple's ``MobileViTBlock`` (recognized by an enclosing module that declares ``patch_area``):
  folded back to (B, D, h * p, w * p), one map per image.

Anything else (attention internals such as (B, heads, N, d), windows folded into the batch,
flat vectors) is refused in one line naming the layer and its shape. ``reshape=`` (CAM methods)
passes a layout explicitly: a callable (output -> (B, C, h, w)) or the patch grid ``(h, w)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import BadLayer

GridReshape = Callable[[Tensor], Tensor] | tuple[int, int] | None
"""How a layer's output becomes a (B, C, h, w) map; ``None`` reads it (see the module notes)."""

MAX_PREFIX = 8
"""Most prefix tokens looked for when the model does not declare how many it has."""


def is_attention(module: nn.Module) -> bool:
    """An attention module, by its type (torch's MultiheadAttention, or a name with "attention")."""
    return isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower()


@torch.no_grad()
def normalizes_last_dim(module: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``module`` normalizes each row of the last dimension of a ``shape`` input, by
    behaviour: its output does not change when each row is scaled by its own positive factor
    (LayerNorm and RMSNorm of any class; not BatchNorm, LayerNorm2d over channels, Linear).

    Only leaves without buffers are tried (running statistics would change), through
    ``forward`` itself so that no hook on the module sees the trial."""
    if (len(shape) < 2 or shape[-1] < 2 or next(iter(module.children()), None) is not None
            or next(iter(module.buffers()), None) is not None):
        return False
    params = next(module.parameters(), None)
    dtype, device = (params.dtype, params.device) if params is not None else (None, None)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).to(dtype=dtype, device=device)
    scale = (0.5 + 1.5 * torch.rand(*shape[:-1], 1, generator=gen)).to(dtype=dtype, device=device)
    try:
        y, scaled, other = module.forward(x), module.forward(x * scale), module.forward(x.flip(-1))
    except Exception:  # a module that cannot take a (..., D) tensor is no such norm
        return False
    if not all(isinstance(t, Tensor) and t.shape == x.shape for t in (y, scaled, other)):
        return False
    tol = 1e-3 * float(y.abs().max()) + 1e-6
    return bool((y - scaled).abs().max() <= tol) and not bool((y - other).abs().max() <= tol)


def _stride_fits(n: int, size: int) -> tuple[float, float]:
    """The strides s with |size / s - n| <= 1 (a grid side rounded from the image side)."""
    return size / (n + 1), (size / (n - 1) if n > 1 else math.inf)


def fits(grid: tuple[int, int], image: tuple[int, int]) -> bool:
    """Whether (h, w) is a grid of an (H, W) image: one stride for both sides up to rounding,
    or the image's aspect ratio within 1.25x (valid convolutions shrink small maps unevenly)."""
    (h, w), (height, width) = grid, image
    if h < 1 or w < 1:
        return False
    (lo_h, hi_h), (lo_w, hi_w) = _stride_fits(h, height), _stride_fits(w, width)
    ratio = (h / w) / (height / width)
    return max(lo_h, lo_w) < min(hi_h, hi_w) or 0.8 <= ratio <= 1.25


def _token_grid(count: int, image: tuple[int, int]) -> tuple[int, int] | None:
    """The grid (h, w) of ``count`` row-major tokens of an (H, W) image, if there is one."""
    if count < 1:
        return None
    guess = math.sqrt(count * image[0] / image[1])
    for h in sorted(range(max(1, int(guess) - 1), int(guess) + 3), key=lambda v: abs(v - guess)):
        if count % h == 0 and fits((h, count // h), image):
            return h, count // h
    return None


@dataclass(frozen=True)
class Layout:
    """How one layer's output reads as a (B, C, h, w) map (see the module notes)."""

    kind: str
    """"map", "volume", "channels-last", "tokens", "unfolded" or "given" (``reshape=``)."""
    channels: int
    grid: tuple[int, int]
    prefix: int = 0
    """Tokens dropped before the patch grid (class and distillation tokens)."""
    patch: int = 1
    """Unfolded: the side p of the p x p positions folded into the batch."""
    given: Callable[[Tensor], Tensor] | None = None
    frames: int = 0
    """Volume: the t of its (B, C, t, h, w) maps (0 for maps of images)."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one image's map (of each of a volume's t frames)."""
        return self.channels, *self.grid

    def read(self, out: Tensor) -> Tensor:
        """The output (activations or their gradients) as (B, C, h, w), (B, C, t, h, w) for a volume."""
        if self.given is not None:
            return self.given(out)
        if self.kind in ("map", "volume"):
            return out
        if self.kind == "channels-last":
            return out.permute(0, 3, 1, 2)
        h, w = self.grid
        if self.kind == "tokens":
            return out[:, self.prefix:].reshape(out.shape[0], h, w, -1).permute(0, 3, 1, 2)
        p = self.patch  # unfolded: (B * p * p, n_h * n_w, C) -> (B, C, n_h * p, n_w * p)
        grid = out.reshape(-1, p, p, h // p, w // p, out.shape[-1])
        return grid.permute(0, 5, 3, 1, 4, 2).reshape(grid.shape[0], -1, h, w)

    def per_channel(self, values: Tensor) -> Tensor:
        """One value per image and channel (B, C), shaped to broadcast against the layer's own
        output (what a channel ablation multiplies it by); ``None`` channels for a given reshape."""
        if self.kind == "map":
            return values[:, :, None, None]
        if self.kind == "volume":
            return values[:, :, None, None, None]
        if self.kind == "channels-last":
            return values[:, None, None, :]
        if self.kind == "tokens":
            return values[:, None, :]
        if self.kind == "unfolded":
            return values.repeat_interleave(self.patch * self.patch, 0)[:, None, :]
        raise BadLayer("a layer read through a reshape callable has no known channel axis; name "
                       "the layer without reshape= or use a gradient CAM")


def _refuse(layer: str, shape: tuple[int, ...], why: str) -> BadLayer:
    return BadLayer(f"layer {layer!r} gives shape {shape}, which is not a map of the image: {why}; "
                    "name a convolutional layer with a (B, C, h, w) map or a transformer layer "
                    "with (B, tokens, C) tokens (see `convscope layers`)")


def _unfold_patch(module: nn.Module | None, root: nn.Module | None) -> int | None:
    """The patch side p of the MobileViT block around ``module`` (one declaring ``patch_area``)."""
    if module is None or root is None:
        return None
    for block in root.modules():
        area = getattr(block, "patch_area", None)
        if isinstance(area, int) and any(m is module for m in block.modules()):
            side = math.isqrt(area)
            return side if side * side == area and side > 1 else None
    return None


def _given(layer: str, shape: tuple[int, ...], reshape: GridReshape, batch: int) -> Layout:
    """The layout the caller gave with ``reshape=``: a callable or the patch grid (h, w)."""
    if callable(reshape):
        fn = reshape

        def checked(out: Tensor) -> Tensor:
            grid = fn(out)
            if not isinstance(grid, Tensor) or grid.ndim != 4 or grid.shape[0] != batch:
                got = tuple(grid.shape) if isinstance(grid, Tensor) else type(grid).__name__
                raise BadLayer(f"reshape for layer {layer!r} returned {got}; it must return "
                               f"(B, K, h, w) with the image batch B = {batch}")
            return grid

        return Layout("given", 0, (0, 0), given=checked)
    assert reshape is not None
    h, w = reshape
    if len(shape) == 4 and shape[0] == batch and tuple(shape[1:3]) == (h, w):
        return Layout("channels-last", shape[3], (h, w))
    if len(shape) == 4 and shape[0] == batch and tuple(shape[2:]) == (h, w):
        return Layout("map", shape[1], (h, w))
    # the tokens before the grid are a few (class, distillation, register tokens): fewer than one
    # row of the grid, or the grid is not the one these tokens form
    prefix = shape[1] - h * w if len(shape) == 3 else -1
    if len(shape) == 3 and shape[0] == batch and 0 <= prefix <= MAX_PREFIX and prefix < max(w, 2):
        return Layout("tokens", shape[2], (h, w), prefix=prefix)
    raise BadLayer(f"reshape={reshape!r} does not fit layer {layer!r}'s output {shape}; give the "
                   "patch grid (h, w) of its tokens")


def layout_of(shape: tuple[int, ...], layer: str, *, image: tuple[int, int], batch: int,
              module: nn.Module | None = None, root: nn.Module | None = None,
              reshape: GridReshape = None) -> Layout:
    """How an output of ``shape`` (batch included) of ``layer`` reads as a (B, C, h, w) map of
    ``batch`` images of size ``image``; :class:`BadLayer` in one line if it does not."""
    shape = tuple(int(s) for s in shape)
    if reshape is not None:
        return _given(layer, shape, reshape, batch)
    if len(shape) == 4 and shape[0] == batch:
        first, last = fits(shape[2:], image), fits(shape[1:3], image)  # type: ignore[arg-type]
        if first and last:  # C close to h: what the module does to the last dimension decides
            last = module is not None and (isinstance(module, nn.Linear)
                                           or normalizes_last_dim(module, shape))
        if first and not last:
            return Layout("map", shape[1], (shape[2], shape[3]))
        if last:
            return Layout("channels-last", shape[3], (shape[1], shape[2]))
        raise _refuse(layer, shape, f"neither {shape[2:]} nor {shape[1:3]} is a grid of the "
                      f"{image[0]}x{image[1]} image")
    if len(shape) == 5 and shape[0] == batch:
        if fits(shape[3:], image):  # type: ignore[arg-type]
            return Layout("volume", shape[1], (shape[3], shape[4]), frames=shape[2])
        raise _refuse(layer, shape, f"{shape[3:]} is not a grid of the {image[0]}x{image[1]} frames")
    if len(shape) == 3 and shape[0] == batch:
        declared = getattr(root, "num_prefix_tokens", None)
        prefixes = ([declared] if isinstance(declared, int) else []) + list(range(MAX_PREFIX + 1))
        for prefix in prefixes:
            grid = _token_grid(shape[1] - prefix, image)
            if grid is not None:
                return Layout("tokens", shape[2], grid, prefix=prefix)
        raise _refuse(layer, shape, f"its {shape[1]} tokens form no grid of the "
                      f"{image[0]}x{image[1]} image")
    if len(shape) == 3 and batch > 0 and shape[0] % batch == 0 and shape[0] > batch:
        p = _unfold_patch(module, root)
        grid = _token_grid(shape[1], image) if p is not None else None
        if p is not None and grid is not None and shape[0] == batch * p * p:
            return Layout("unfolded", shape[2], (grid[0] * p, grid[1] * p), patch=p)
        raise _refuse(layer, shape, f"its first dimension {shape[0]} is not the image batch "
                      f"{batch} (patches or windows folded into the batch)")
    if len(shape) >= 1 and shape[0] != batch:
        raise _refuse(layer, shape, f"its first dimension {shape[0]} is not the image batch {batch}")
    raise _refuse(layer, shape, "no spatial axes")
