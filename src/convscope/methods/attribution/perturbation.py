"""Perturbation attributions: occlusion and RISE. Forward passes only, on the fast path.

Occlusion -- Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks",
    Sec. 4.2: slide a square (here ``window`` = (wh, ww) pixels, step ``stride``) over the image,
    replace it by a baseline (the paper's grey square is ``baseline="mean"``) and record the
    drop of the target score ``d_w = f(x) - f(x with window w occluded)``. Each pixel gets the
    average drop of the windows covering it: ``A(p) = sum_w d_w [p in w] / #{w : p in w}``. This
    is exactly Captum's ``Occlusion`` with ``sliding_window_shapes=(C, wh, ww)`` and
    ``strides=(C, sh, sw)``: windows start at ``k * stride`` for
    ``k = 0 .. ceil((H - wh) / sh)`` (the last one clipped at the border), so every pixel is
    covered. Because the windows form a grid, ``sum_w d_w [p in w]`` is ``Y^T D X`` with D the
    (ny, nx) drops and Y (ny, H), X (nx, W) the row and column cover indicators: no per-window
    image is ever kept. (B, C, H, W) -> (B, 1, H, W), signed.

RISE -- Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for Explanation of
    Black-box Models", Sec. 3: ``S(p) = 1 / (E[M] N) sum_i f(x . M_i) M_i(p)`` (Eq. 6, E[M] = p)
    with N random masks (Sec. 3.2): binary ``cells x cells`` grids with keep probability ``p``,
    bilinearly upsampled to ``(cells + 1) * ceil(H / cells)`` and cropped at a random shift in
    ``[0, ceil(H / cells))``, so the kept regions have smooth, arbitrarily placed edges. ``x . M``
    blends towards the baseline, ``baseline + M (x - baseline)``; the paper's ``baseline="black"``
    multiplies the PIXELS by the mask (black elsewhere). f is the class probability (Sec. 3:
    ``output="probability"``) or the logit. The low-res grids and shifts are drawn once per call
    from a ``torch.Generator`` seeded with ``seed``; full-size masks are built per chunk.
    (B, C, H, W) -> (B, 1, H, W), non-negative for probabilities.

Both run B x (windows or masks) perturbed images through :class:`convscope.model.FastForward`
(BatchNorm-folded copy, inference mode), ``batch_size`` images per pass (default: per device,
:func:`convscope.model.default_batch_size`); each chunk is built on the fly from its row indices.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import BadArgument, check_choice, check_positive
from ...model import FastForward, Model, default_batch_size, select, target_indices
from ...model.structured import Packing, use_probabilities
from ...types import ProgressFn, Target, TargetFn
from ..registry import register
from .base import Attribution
from .baselines import BaselineName, check_baseline
from .flat import warn_unvaried

Output = Literal["probability", "logit"]


def _pair(name: str, value: int | tuple[int, int]) -> tuple[int, int]:
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise BadArgument(f"{name}={value!r}: a positive integer or a (height, width) pair of them")
    return pair  # type: ignore[return-value]


def feature_groups(packing: Packing, inputs: Tensor, given: Tensor | Sequence[Tensor] | None,
                   window: int | Sequence[int] | None) -> Tensor:
    """Group ids (N,) long, 0 .. G-1, of the packed elements: what is hidden together.

    ``given``: integer ids per input (one tensor per input, its sample shape or broadcastable to
    it); ids of different inputs never merge. Default: each feature of a table (or blocks of
    ``window`` features), and for (C, *spatial) inputs blocks of ``window`` positions (default
    1/8 of each side) across all channels.
    """
    parts: list[Tensor] = []
    offset = 0
    givens = [given] if isinstance(given, Tensor) else list(given) if given is not None else None
    if givens is not None and (len(givens) != len(packing.shapes) or not all(
            isinstance(g, Tensor) and not g.is_floating_point() for g in givens)):
        raise BadArgument(f"groups: give one integer tensor per input ({len(packing.shapes)} inputs "
                          f"of shapes {', '.join(map(str, packing.shapes))})")
    for i, shape in enumerate(packing.shapes):
        if givens is not None:
            try:
                ids = givens[i].to(inputs.device).long().expand(shape)
            except RuntimeError:
                raise BadArgument(f"groups for input {i} have shape {tuple(givens[i].shape)}, which "
                                  f"does not broadcast to the input's {shape}") from None
        else:
            ids = _block_ids(shape, window, inputs.device)
        ids = torch.unique(ids.reshape(-1), return_inverse=True)[1]
        parts.append(ids + offset)
        offset += int(ids.max()) + 1
    return torch.cat(parts)


def _block_ids(shape: tuple[int, ...], window: int | Sequence[int] | None, device: torch.device) -> Tensor:
    """Block ids over one input's sample shape: features for (F,), positions for (C, *spatial)."""
    spatial = shape if len(shape) == 1 else shape[1:]
    sizes = [window] * len(spatial) if window is None or isinstance(window, int) else list(window)
    if len(sizes) != len(spatial):
        raise BadArgument(f"window={window!r} does not fit inputs of shape {shape}: give one int, or "
                          f"one per dimension of {tuple(spatial)}")
    ids = torch.zeros((), dtype=torch.long, device=device)
    for dim, (size, w) in enumerate(zip(spatial, sizes)):
        w = w if w is not None else (1 if len(shape) == 1 else max(1, math.ceil(size / 8)))
        check_positive("window", w, integer=True)
        blocks = torch.arange(size, device=device) // int(w)
        view = [1] * len(spatial)
        view[dim] = size
        ids = ids * (math.ceil(size / int(w))) + blocks.view(view)
    return ids.expand(spatial) if len(shape) == 1 else ids.expand(shape)


def resolve_target(model: Model, logits: Tensor, target: Target) -> Tensor | TargetFn:
    """Class indices (B,) read on the unperturbed logits ("top1" of an occluded copy is another class)."""
    if callable(target):
        return target
    idx = target_indices(logits, target, model.labels)
    assert idx is not None
    return idx


def _rows_target(target: Tensor | TargetFn, images: Tensor) -> Tensor | TargetFn:
    return target[images] if isinstance(target, Tensor) else target


class _Perturbation(Attribution):
    """Shared options of the perturbation family: what hidden elements become, chunk size and
    progress."""

    def __init__(self, model: Model, *, baseline: BaselineName | Tensor, sigma: float, seed: int = 0,
                 batch_size: int | None, progress: ProgressFn | None) -> None:
        super().__init__(model)
        if batch_size is not None:
            check_positive("batch_size", batch_size, integer=True)
        check_positive("sigma", sigma)
        self.baseline = check_baseline("baseline", baseline)
        self.sigma, self.seed = sigma, seed
        self.batch_size, self.progress = batch_size, progress

    def chunk(self, inputs: Tensor) -> int:
        return int(self.batch_size or default_batch_size(inputs.device))

    def fill(self, inputs: Tensor) -> Tensor:
        """What hidden elements become (the method's ``baseline``, see :mod:`.baselines`)."""
        return self.baseline_for(inputs, self.baseline, sigma=self.sigma, seed=self.seed)


@register("occlusion", family="perturbation", signed=True)
class Occlusion(_Perturbation):
    """Occlusion (Zeiler & Fergus 2014): score drop when a sliding window is hidden, per pixel.

    Options: ``window`` (pixels, int or (h, w); default about 1/7 of the input's shorter side,
    32 at 224), ``stride`` (default half the window), ``baseline`` "mean" / "black" / "blur" /
    "uniform" / tensor (see :mod:`.baselines`), ``sigma`` for "blur", ``batch_size`` images per pass.

    Inputs that are not one image batch (tables, signals, several inputs) get feature ablation
    (Captum's ``FeatureAblation``): each group of elements (``groups``, default per
    :func:`feature_groups`: every table feature, ``window``-sized blocks of a signal) is hidden
    at once, and every element of the group gets the score drop.
    """

    def __init__(
        self,
        model: Model,
        *,
        window: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        baseline: BaselineName | Tensor = "mean",
        sigma: float = 10.0,
        groups: Tensor | tuple[Tensor, ...] | None = None,
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        super().__init__(model, baseline=baseline, sigma=sigma, batch_size=batch_size, progress=progress)
        self.groups, self.window_option = groups, window
        side = min(model.input_size)
        self.window = _pair("window", window if window is not None else max(1, math.ceil(side / 7)))
        self.stride = _pair("stride", stride if stride is not None
                            else tuple(max(1, w // 2) for w in self.window))  # type: ignore[arg-type]
        if any(s > w for s, w in zip(self.stride, self.window)):
            raise BadArgument(f"stride={self.stride} is larger than window={self.window}: "
                              "some pixels would never be occluded")

    def grid(self, height: int, width: int) -> tuple[Tensor, Tensor]:
        """Cover indicators (ny, H) and (nx, W): row ``k`` marks the pixels of window ``k``."""
        if self.window[0] > height or self.window[1] > width:
            raise BadArgument(f"window={self.window} does not fit the {height}x{width} input")
        out = []
        for size, win, step in zip((height, width), self.window, self.stride):
            starts = torch.arange(math.ceil((size - win) / step) + 1) * step
            pos = torch.arange(size)
            out.append((pos >= starts[:, None]) & (pos < starts[:, None] + win))
        return out[0], out[1]

    def _chunks(self, inputs: Tensor, fill: Tensor, ys: Tensor, xs: Tensor) -> Iterator[Tensor]:
        windows = ys.shape[0] * xs.shape[0]
        total, step = inputs.shape[0] * windows, self.chunk(inputs)
        for start in range(0, total, step):
            rows = torch.arange(start, min(start + step, total), device=inputs.device)
            image, w = rows // windows, rows % windows
            mask = ys[w // xs.shape[0]][:, :, None] & xs[w % xs.shape[0]][:, None, :]
            yield torch.where(mask[:, None], fill[image], inputs[image])

    def ablate(self, inputs: Tensor, target: Target) -> Tensor:
        """Feature ablation on packed inputs (B, N): each element gets its group's score drop."""
        assert self.packing is not None
        groups = feature_groups(self.packing, inputs, self.groups, self.window_option)
        count, batch = int(groups.max()) + 1, inputs.shape[0]
        fast = FastForward(self.model)
        logits = fast(inputs)
        target = resolve_target(self.model, logits, target)
        clean = select(logits, target).float()
        fill = self.fill(inputs)
        samples = torch.arange(batch, device=inputs.device).repeat_interleave(count)

        def chunks() -> Iterator[Tensor]:
            step = self.chunk(inputs)
            for start in range(0, batch * count, step):
                rows = torch.arange(start, min(start + step, batch * count), device=inputs.device)
                hide = groups[None] == (rows % count)[:, None]
                yield torch.where(hide, fill[rows // count], inputs[rows // count])

        hidden = fast.scores(chunks(), _rows_target(target, samples), total=batch * count,
                             progress=self.progress)
        warn_unvaried(self.method_name, torch.cat([clean[:, None], hidden.view(batch, count)], 1), logits,
                      target, probabilities=False, stacklevel=5)
        drops = (clean[samples] - hidden).view(batch, count)
        return drops.gather(1, groups.expand(batch, -1)).to(inputs.dtype)

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        if self.packing is not None:
            return self.ablate(inputs, target)
        batch, _, height, width = inputs.shape
        ys, xs = (t.to(inputs.device) for t in self.grid(height, width))
        fast = FastForward(self.model)
        logits = fast(inputs)
        target = resolve_target(self.model, logits, target)
        clean = select(logits, target).float()
        fill = self.fill(inputs)
        windows = ys.shape[0] * xs.shape[0]
        images = torch.arange(batch, device=inputs.device).repeat_interleave(windows)
        occluded = fast.scores(self._chunks(inputs, fill, ys, xs), _rows_target(target, images),
                               total=batch * windows, progress=self.progress)
        warn_unvaried(self.method_name, torch.cat([clean[:, None], occluded.view(batch, windows)], 1),
                      logits, target, probabilities=False, stacklevel=4)
        drops = (clean[images] - occluded).view(batch, ys.shape[0], xs.shape[0])
        y, x = ys.to(drops), xs.to(drops)
        summed = torch.einsum("bij,iy,jx->byx", drops, y, x)
        return (summed / torch.outer(y.sum(0), x.sum(0)))[:, None].to(inputs.dtype)


@register("rise", family="perturbation")
class RISE(_Perturbation):
    """RISE (Petsiuk et al. 2018): scores of randomly masked copies, averaged with their masks.

    Options: ``masks`` N, ``cells`` grid cells per side of each low-res mask, ``p`` the keep
    probability, ``baseline`` "black" (the paper) / "mean" / "blur" / "uniform" / tensor, ``output``
    "probability" (the paper) or "logit", ``seed``, ``batch_size`` images per pass.
    """

    images_only = True

    def __init__(
        self,
        model: Model,
        *,
        masks: int = 2000,
        cells: int = 7,
        p: float = 0.5,
        baseline: BaselineName | Tensor = "black",
        output: Output = "probability",
        sigma: float = 10.0,
        seed: int = 0,
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        super().__init__(model, baseline=baseline, sigma=sigma, seed=seed, batch_size=batch_size,
                         progress=progress)
        check_positive("masks", masks, integer=True)
        check_positive("cells", cells, integer=True)
        if not 0 < p < 1:
            raise BadArgument(f"p={p!r}: the probability of keeping a cell, strictly between 0 and 1")
        check_choice("output", output, Output)
        self.masks, self.cells, self.p = int(masks), int(cells), float(p)
        self.output = output

    def sample(self, height: int, width: int) -> tuple[Tensor, Tensor]:
        """Low-res binary grids (N, 1, cells, cells) and crop shifts (N, 2), from ``seed``."""
        gen = torch.Generator().manual_seed(self.seed)
        grids = (torch.rand(self.masks, 1, self.cells, self.cells, generator=gen) < self.p).float()
        cell_h, cell_w = math.ceil(height / self.cells), math.ceil(width / self.cells)
        shifts = torch.stack([torch.randint(0, cell_h, (self.masks,), generator=gen),
                              torch.randint(0, cell_w, (self.masks,), generator=gen)], 1)
        return grids, shifts

    def upsample(self, grids: Tensor, shifts: Tensor, height: int, width: int) -> Tensor:
        """Full-size masks (n, 1, H, W) in [0, 1]: bilinear upsampling, then the shifted crop."""
        cell_h, cell_w = math.ceil(height / self.cells), math.ceil(width / self.cells)
        up = F.interpolate(grids, size=((self.cells + 1) * cell_h, (self.cells + 1) * cell_w),
                           mode="bilinear", align_corners=False)
        rows = shifts[:, 0, None] + torch.arange(height, device=up.device)  # (n, H)
        cols = shifts[:, 1, None] + torch.arange(width, device=up.device)  # (n, W)
        n = torch.arange(up.shape[0], device=up.device)[:, None, None]
        return up[n, 0, rows[:, :, None], cols[:, None, :]][:, None].clamp(0, 1)  # rounding: 1 + 1e-7

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        softmax = use_probabilities(self.model, "rise", "output='probability'", self.output == "probability")
        batch, _, height, width = inputs.shape
        grids, shifts = (t.to(inputs.device) for t in self.sample(height, width))
        fast = FastForward(self.model, rows=batch * self.masks)
        logits = fast(inputs)
        target = resolve_target(self.model, logits, target)
        low = torch.full((batch,), float("inf"), device=inputs.device, dtype=torch.float64)
        high = torch.full_like(low, float("-inf"))
        fill = self.fill(inputs)
        saliency = torch.zeros(batch, 1, height, width, device=inputs.device, dtype=inputs.dtype)
        total, step = batch * self.masks, self.chunk(inputs)
        for start in range(0, total, step):
            rows = torch.arange(start, min(start + step, total), device=inputs.device)
            image, i = rows // self.masks, rows % self.masks
            masks = self.upsample(grids[i], shifts[i], height, width).to(inputs.dtype)
            masked = fill[image] + masks * (inputs[image] - fill[image])
            scores = fast.scores(masked, _rows_target(target, image), batch_size=rows.numel(),
                                 softmax=softmax)
            saliency.index_add_(0, image, scores.view(-1, 1, 1, 1) * masks)
            low.scatter_reduce_(0, image, scores.double(), "amin")
            high.scatter_reduce_(0, image, scores.double(), "amax")
            if self.progress is not None:
                self.progress(int(rows[-1]) + 1, total)
        warn_unvaried(self.method_name, torch.stack([low, high], 1), logits, target,
                      probabilities=softmax, option="output='logit'",
                      count=self.masks, stacklevel=4)
        return (saliency / (self.masks * self.p)).to(inputs.dtype)
