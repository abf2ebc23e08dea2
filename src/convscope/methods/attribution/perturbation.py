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

Clips and volumes (B, C, T, H, W): occlusion slides a space-time window (t, h, w) with a stride
per axis (a window of (h, w) spans ``ceil(T / 4)`` frames) and RISE draws its low-res grids over
time too (``time_cells`` cells along T), upsampled trilinearly; the maps are (B, 1, T, H, W).
The sums above run over the three axes unchanged.

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
from ...model.fast import as_input_of
from ...model.structured import Packing, use_probabilities
from ...model.targets import reads_output
from ...types import OutputTarget, ProgressFn, Target
from ..registry import register
from .base import Attribution
from .baselines import BaselineName, check_baseline
from .flat import warn_unvaried

Output = Literal["probability", "logit"]


Extent = int | tuple[int, int] | tuple[int, int, int]
"""A window or stride: one side, (height, width), or (frames, height, width) for clips."""


def _extent(name: str, value: Extent) -> tuple[int, ...]:
    sides = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(sides) not in (2, 3) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                           for v in sides):
        raise BadArgument(f"{name}={value!r}: a positive integer, a (height, width) pair of them, or "
                          "(frames, height, width) for clips")
    return sides


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


def resolve_target(model: Model, logits: Tensor, target: Target) -> Tensor | OutputTarget:
    """Class indices (B,) read on the unperturbed logits ("top1" of an occluded copy is another class)."""
    if reads_output(target):
        return target
    idx = target_indices(logits, target, model.labels)
    assert idx is not None
    return idx


def _rows_target(target: Tensor | OutputTarget, images: Tensor) -> Tensor | OutputTarget:
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
    32 at 224; (t, h, w) for clips, whose windows span ``ceil(T / 4)`` frames unless given),
    ``stride`` (default half the window), ``baseline`` "mean" / "black" / "blur" /
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
        window: Extent | None = None,
        stride: Extent | None = None,
        baseline: BaselineName | Tensor = "mean",
        sigma: float = 10.0,
        groups: Tensor | tuple[Tensor, ...] | None = None,
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        super().__init__(model, baseline=baseline, sigma=sigma, batch_size=batch_size, progress=progress)
        self.groups, self.window_option = groups, window
        side = min(model.input_size)
        self.window = _extent("window", window if window is not None else max(1, math.ceil(side / 7)))
        self.stride = (_extent("stride", stride) if stride is not None
                       else tuple(max(1, w // 2) for w in self.window))
        if any(s > w for s, w in zip(self.stride[::-1], self.window[::-1])):
            raise BadArgument(f"stride={self.stride} is larger than window={self.window}: "
                              "some pixels would never be occluded")

    def extents(self, sizes: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The window and stride over the input's axes: (h, w), or (t, h, w) for a clip of T
        frames (a window given as (h, w) spans ``ceil(T / 4)`` frames; the stride defaults to
        half the window)."""
        window = self.window
        if len(window) > len(sizes):
            raise BadArgument(f"window={window}: (frames, height, width) is for (B, C, T, H, W) clips; "
                              f"give (height, width) for images")
        if len(window) < len(sizes):
            window = (max(1, math.ceil(sizes[0] / 4)), *window)
        stride = self.stride
        if len(stride) > len(window):
            raise BadArgument(f"stride={stride}: (frames, height, width) is for (B, C, T, H, W) clips; "
                              "give (height, width) for images")
        stride = (*(max(1, w // 2) for w in window[:len(window) - len(stride)]), *stride)
        if any(w > n for w, n in zip(window, sizes)):
            what = "x".join(map(str, sizes))
            frames = (f": the clip has {sizes[0]} frames, fewer than the window's {window[0]}; give "
                      "a longer clip or a shorter window" if len(sizes) == 3 and window[0] > sizes[0]
                      else "")
            raise BadArgument(f"window={window} does not fit the {what} input{frames}")
        return window, stride

    def grid(self, *sizes: int) -> tuple[Tensor, ...]:
        """Cover indicators, one (n_axis, size) per axis ((ny, H) and (nx, W); (nt, T) first for
        clips): row ``k`` marks the positions of window ``k`` along that axis."""
        window, stride = self.extents(sizes)
        out = []
        for size, win, step in zip(sizes, window, stride):
            starts = torch.arange(math.ceil((size - win) / step) + 1) * step
            pos = torch.arange(size)
            out.append((pos >= starts[:, None]) & (pos < starts[:, None] + win))
        return tuple(out)

    def _chunks(self, inputs: Tensor, fill: Tensor, covers: Sequence[Tensor]) -> Iterator[Tensor]:
        counts = [c.shape[0] for c in covers]
        windows = math.prod(counts)
        total, step = inputs.shape[0] * windows, self.chunk(inputs)
        for start in range(0, total, step):
            rows = torch.arange(start, min(start + step, total), device=inputs.device)
            image, rest = rows // windows, rows % windows
            mask = torch.ones((), dtype=torch.bool, device=inputs.device)
            for axis in reversed(range(len(covers))):  # the window index in row-major order
                shape = [-1] + [1] * len(covers)
                shape[axis + 1] = covers[axis].shape[1]
                mask = mask & covers[axis][rest % counts[axis]].view(shape)
                rest = rest // counts[axis]
            if inputs.shape[0] == 1:  # one image: broadcast it, no per-row copies to blend
                yield torch.where(mask[:, None], fill, inputs)
            else:
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
                      target, probabilities=False)
        drops = (clean[samples] - hidden).view(batch, count)
        return drops.gather(1, groups.expand(batch, -1)).to(inputs.dtype)

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        if self.packing is not None:
            return self.ablate(inputs, target)
        batch, sizes = inputs.shape[0], inputs.shape[2:]
        covers = [t.to(inputs.device) for t in self.grid(*sizes)]
        counts = [c.shape[0] for c in covers]
        fast = FastForward(self.model)
        logits = fast(inputs)
        target = resolve_target(self.model, logits, target)
        clean = select(logits, target).float()
        # chunks blended in the memory format the chosen copy runs on: no copy per chunk
        fill = as_input_of(fast.net, self.fill(inputs))
        windows = math.prod(counts)
        images = torch.arange(batch, device=inputs.device).repeat_interleave(windows)
        occluded = fast.scores(self._chunks(as_input_of(fast.net, inputs), fill, covers),
                               _rows_target(target, images),
                               total=batch * windows, progress=self.progress)
        warn_unvaried(self.method_name, torch.cat([clean[:, None], occluded.view(batch, windows)], 1),
                      logits, target, probabilities=False)
        drops = (clean[images] - occluded).view(batch, *counts)
        cover = [c.to(drops) for c in covers]
        # sum_w d_w [p in w] and #{w : p in w} as products of the per-axis indicators
        window_axes, pixel_axes = "ijk"[:len(cover)], "tyx"[-len(cover):]
        terms = ",".join(f"{w}{p}" for w, p in zip(window_axes, pixel_axes))
        summed = torch.einsum(f"b{window_axes},{terms}->b{pixel_axes}", drops, *cover)
        count = torch.einsum(f"{terms}->{pixel_axes}", *[c.clone() for c in cover])
        return (summed / count)[:, None].to(inputs.dtype)


@register("rise", family="perturbation")
class RISE(_Perturbation):
    """RISE (Petsiuk et al. 2018): scores of randomly masked copies, averaged with their masks.

    Options: ``masks`` N, ``cells`` grid cells per side of each low-res mask (``time_cells``
    along the frames of a clip, default ``min(cells, T)``), ``p`` the keep probability,
    ``baseline`` "black" (the paper) / "mean" / "blur" / "uniform" / tensor, ``output``
    "probability" (the paper) or "logit", ``seed``, ``batch_size`` images per pass.
    """

    images_only = True

    def __init__(
        self,
        model: Model,
        *,
        masks: int = 2000,
        cells: int = 7,
        time_cells: int | None = None,
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
        if time_cells is not None:
            check_positive("time_cells", time_cells, integer=True)
        if not 0 < p < 1:
            raise BadArgument(f"p={p!r}: the probability of keeping a cell, strictly between 0 and 1")
        check_choice("output", output, Output)
        self.masks, self.cells, self.p = int(masks), int(cells), float(p)
        self.time_cells = time_cells
        self.output = output

    def cell_counts(self, sizes: Sequence[int]) -> tuple[int, ...]:
        """Cells per axis of the low-res grids: (cells, cells), or (time_cells, cells, cells)."""
        if len(sizes) == 3:
            return (self.time_cells or min(self.cells, sizes[0]), self.cells, self.cells)
        return (self.cells, self.cells)

    def sample(self, *sizes: int) -> tuple[Tensor, Tensor]:
        """Low-res binary grids (N, 1, cells, cells) and crop shifts (N, 2), from ``seed``
        ((N, 1, time_cells, cells, cells) and (N, 3) for a clip's (T, H, W))."""
        cells = self.cell_counts(sizes)
        gen = torch.Generator().manual_seed(self.seed)
        grids = (torch.rand(self.masks, 1, *cells, generator=gen) < self.p).float()
        shifts = torch.stack([torch.randint(0, math.ceil(size / c), (self.masks,), generator=gen)
                              for size, c in zip(sizes, cells)], 1)
        return grids, shifts

    def upsample(self, grids: Tensor, shifts: Tensor, *sizes: int) -> Tensor:
        """Full-size masks (n, 1, H, W) in [0, 1] ((n, 1, T, H, W) for clips): bilinear
        (trilinear) upsampling, then the shifted crop."""
        cells = self.cell_counts(sizes)
        steps = [math.ceil(size / c) for size, c in zip(sizes, cells)]
        up = F.interpolate(grids, size=tuple((c + 1) * s for c, s in zip(cells, steps)),
                           mode="trilinear" if len(sizes) == 3 else "bilinear", align_corners=False)
        index: list[Tensor] = [torch.arange(up.shape[0], device=up.device).view(-1, *[1] * len(sizes))]
        for axis, size in enumerate(sizes):  # each axis' crop, (n, 1.., size, ..1)
            shape = [-1] + [1] * len(sizes)
            shape[axis + 1] = size
            index.append((shifts[:, axis, None] + torch.arange(size, device=up.device)).view(shape))
        return up[:, 0][tuple(index)][:, None].clamp(0, 1)  # rounding: 1 + 1e-7

    def masked(self, inputs: Tensor, fill: Tensor, grids: Tensor,
               shifts: Tensor) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Chunk by chunk (``batch_size`` rows, progress reported): the image of each row (n,),
        its mask (n, 1, H, W) and the masked copy ``fill + M (x - fill)`` (n, C, H, W); clips
        (n, C, T, H, W) get masks (n, 1, T, H, W)."""
        sizes = inputs.shape[2:]
        total, step = inputs.shape[0] * self.masks, self.chunk(inputs)
        for start in range(0, total, step):
            rows = torch.arange(start, min(start + step, total), device=inputs.device)
            image, i = rows // self.masks, rows % self.masks
            masks = self.upsample(grids[i], shifts[i], *sizes).to(inputs.dtype)
            yield image, masks, fill[image] + masks * (inputs[image] - fill[image])
            if self.progress is not None:
                self.progress(int(rows[-1]) + 1, total)

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        softmax = use_probabilities(self.model, "rise", "output='probability'", self.output == "probability")
        batch, sizes = inputs.shape[0], inputs.shape[2:]
        grids, shifts = (t.to(inputs.device) for t in self.sample(*sizes))
        fast = FastForward(self.model, rows=batch * self.masks)
        logits = fast(inputs)
        target = resolve_target(self.model, logits, target)
        low = torch.full((batch,), float("inf"), device=inputs.device, dtype=torch.float64)
        high = torch.full_like(low, float("-inf"))
        fill = self.fill(inputs)
        saliency = torch.zeros(batch, 1, *sizes, device=inputs.device, dtype=inputs.dtype)
        for image, masks, masked in self.masked(inputs, fill, grids, shifts):
            scores = fast.scores(masked, _rows_target(target, image), batch_size=image.numel(),
                                 softmax=softmax)
            saliency.index_add_(0, image, scores.view(-1, *[1] * (masks.ndim - 1)) * masks)
            low.scatter_reduce_(0, image, scores.double(), "amin")
            high.scatter_reduce_(0, image, scores.double(), "amax")
        warn_unvaried(self.method_name, torch.stack([low, high], 1), logits, target,
                      probabilities=softmax, option="output='logit'",
                      count=self.masks)
        return (saliency / (self.masks * self.p)).to(inputs.dtype)
