"""The inference fast path shared by every method that only runs forward passes.

Occlusion, RISE, Score-CAM, LIME and the deletion/insertion metrics evaluate the network on
hundreds or thousands of perturbed copies of an image and never differentiate. For them the
model is prepared ONCE PER METHOD CALL (never cached across calls: the user may change weights
between calls) as a :class:`FastForward`:

* a BatchNorm-folded deep copy (:func:`~convscope.model.fold.fold_batchnorm`): the user's module
  is never touched, not even put in eval mode (the user's own hooks are copied with it: they
  may be part of what the model computes);
* ``torch.inference_mode`` (no autograd bookkeeping, no version counters);
* channels-last memory format where it was measured to help (:data:`CHANNELS_LAST`);
* chunked evaluation (:meth:`FastForward.scores`) of a tensor or of a stream of chunks built on
  the fly, ``batch_size`` rows at a time, so memory is bounded by one chunk.

Measurements behind the per-device choices (EfficientNet-Lite0, 224x224, torch 2.13 CPU, this
project's 2-core VM, eager mode, ms per image; ``python -m benchmarks.perturbation --batch-table``
with jemalloc, 2026-11-22, in alternating turns):

=====  =====  ==========  ======================
batch  plain  BN folded   folded + channels-last
=====  =====  ==========  ======================
8      14.0   12.4        9.5
16     13.1   11.1        9.1
32     15.2   12.9        9.6
=====  =====  ==========  ======================

Folded + channels-last at batch 1 / 2 / 4 / 8 / 16 / 32, after warm-up: 11.4 / 8.8 / 8.3 / 7.9 /
9.4 / 8.7 with jemalloc, 14.8 / 11.1 / 9.1-14.7 / 15.3-17.5 / 16.5-18.1 / 20.5-23.7 with glibc's
malloc (which returns large buffers to the OS after every forward). Batch 4 is the best choice
with the allocator most users have and costs nothing with jemalloc, hence :data:`CPU_BATCH`.

On CPU channels-last wins at every batch size (oneDNN runs its depthwise and 1x1 convolutions
natively in NHWC; the plain NCHW path reorders each layer's input and output), and per-image
cost stops falling beyond a small batch: larger CPU batches no longer fit the caches and can be
slower per image. On CUDA nothing was measured for this module yet (no GPU was available): the
default keeps the model's own memory format and uses large chunks, which amortize kernel
launches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from ..errors import BadArgument, BadTarget
from ..types import ProgressFn, Target
from .fold import FoldInfo, fold_batchnorm, inference_copy
from .targets import select

CPU_BATCH = 4
"""Default chunk on CPU (see the table above)."""
ACCELERATOR_BATCH = 64
"""Default chunk on CUDA / MPS / XPU: large enough to fill the device for a 224x224 CNN."""
CHANNELS_LAST: dict[str, bool] = {"cpu": True}
"""Device types on which channels-last was measured to help; absent types keep NCHW."""


def default_batch_size(device: torch.device | str) -> int:
    """Rows per forward pass for perturbation methods when the user gives no ``batch_size``."""
    return CPU_BATCH if torch.device(device).type == "cpu" else ACCELERATOR_BATCH


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    if param is None:
        param = next(model.buffers(), None)
    return param.device if param is not None else torch.device("cpu")


class FastForward:
    """A folded, inference-mode copy of a model that scores batches of inputs in chunks.

    Build one per method call (``FastForward(model)``); the model itself is only read (deep
    copied). ``fold=False`` skips the folding, not the copy. When the copy cannot be made
    (modules that refuse ``deepcopy``) the model is used as it is, in its own memory format,
    under ``inference_mode``: callers run under ``guarded(model)`` anyway.
    """

    def __init__(self, model: nn.Module, *, fold: bool = True,
                 channels_last: bool | None = None) -> None:
        self.device = _device_of(model)
        net: nn.Module = model
        self.fold_info = FoldInfo()
        try:
            net = fold_batchnorm(model) if fold else inference_copy(model)
            self.fold_info = getattr(net, "fold_info", self.fold_info)
        except Exception:  # deepcopy refused: stay on the (guarded) original, unfolded
            net = model
        if channels_last is None:
            channels_last = CHANNELS_LAST.get(self.device.type, False)
        self.channels_last = bool(channels_last) and net is not model
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net

    def __call__(self, x: Tensor) -> Tensor:
        """Logits for one chunk (an ordinary tensor, usable outside inference mode)."""
        with torch.inference_mode():
            if self.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            out = self.net(x)
        return out

    def scores(
        self,
        inputs: Tensor | Iterable[Tensor],
        target: Target | Tensor,
        *,
        batch_size: int | None = None,
        softmax: bool = False,
        total: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Tensor:
        """One score per input row, (N,), chunk by chunk.

        Args:
            inputs: a (N, C, H, W) tensor, cut into ``batch_size`` rows per forward pass, or an
                iterable of (n_i, C, H, W) chunks (a generator builds perturbed inputs lazily).
            target: class indices (N,) aligned with the rows, one class for all rows, or a
                callable ``logits -> (n,)`` applied to each chunk's output.
            softmax: score class probabilities instead of logits (a callable gets probabilities).
            total: N for ``progress`` when ``inputs`` is an iterable.
            progress: called as ``progress(rows done, total)`` after each chunk.
        """
        if isinstance(inputs, Tensor):
            total = inputs.shape[0]
            if isinstance(target, Tensor) and target.numel() != total:
                raise BadTarget(f"{target.numel()} targets for {total} inputs")
            step = default_batch_size(inputs.device) if batch_size is None else batch_size
            chunks: Iterable[Tensor] = _split(inputs, step)
        else:
            chunks = inputs
        out: list[Tensor] = []
        done = 0
        for chunk in chunks:
            logits = self(chunk)
            if softmax:
                logits = logits.softmax(-1)
            rows = chunk.shape[0]
            if isinstance(target, Tensor) and done + rows > target.numel():
                raise BadTarget(f"{target.numel()} targets for more than {done + rows - 1} inputs")
            part = target[done:done + rows] if isinstance(target, Tensor) else target
            out.append(select(logits, part).float())
            done += rows
            if progress is not None:
                progress(done, total if total is not None else done)
        if isinstance(target, Tensor) and target.numel() != done:
            raise BadTarget(f"{target.numel()} targets for {done} scored inputs")
        return torch.cat(out) if out else torch.zeros(0, device=self.device)


def _split(inputs: Tensor, batch_size: int) -> Iterator[Tensor]:
    if batch_size <= 0:
        raise BadArgument(f"batch_size={batch_size}: must be a positive integer")
    for start in range(0, inputs.shape[0], batch_size):
        yield inputs[start:start + batch_size]


def fast_forward(model: nn.Module, **options: bool | None) -> FastForward:
    """The fast path for ``model``: ``fast_forward(model).scores(inputs, target, batch_size=...)``."""
    return FastForward(model, **options)  # type: ignore[arg-type]
