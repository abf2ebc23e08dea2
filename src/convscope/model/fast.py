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
* on CPU, a frozen TorchScript graph optimized for inference (:meth:`FastForward.freeze`),
  checked against the eager copy and dropped if it disagrees;
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

import warnings
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from ..errors import BadTarget, check_positive
from ..types import ProgressFn, Target
from .device import device_of as _device_of
from .fold import FoldInfo, fold_batchnorm, fold_info, inference_copy
from .targets import select

CPU_BATCH = 4
"""Default chunk on CPU (see the table above)."""
ACCELERATOR_BATCH = 64
"""Default chunk on CUDA / MPS / XPU: large enough to fill the device for a 224x224 CNN."""
CHANNELS_LAST: dict[str, bool] = {"cpu": True}
"""Device types on which channels-last was measured to help; absent types keep NCHW."""
FREEZE: dict[str, bool] = {"cpu": True}
"""Device types on which a frozen TorchScript graph was measured to help (see :meth:`FastForward.freeze`)."""
FREEZE_MIN_ROWS = 128
"""With ``freeze`` left to the device, :meth:`FastForward.scores` calls for fewer rows stay eager:
tracing costs ~0.28 s and saves ~2 ms per Lite0 image, so it pays from ~140 rows on."""


def default_batch_size(device: torch.device | str) -> int:
    """Rows per forward pass for perturbation methods when the user gives no ``batch_size``."""
    return CPU_BATCH if torch.device(device).type == "cpu" else ACCELERATOR_BATCH


def inference_net(model: nn.Module, *, fold: bool = True, keep: Iterable[nn.Module] = (),
                  channels_last: bool | None = None) -> nn.Module:
    """The copy of ``model`` that forward-only work runs on: eval mode, BN folded, and in
    channels-last memory format on devices where that was measured to help (:data:`CHANNELS_LAST`).

    ``keep``: submodules whose outputs must stay as ``model`` computes them (hooked layers; see
    :func:`~convscope.model.fold.fold_batchnorm`). Feed the result inputs through
    :func:`as_input_of`. A model that refuses ``deepcopy`` comes back as it is (callers guard
    it). Build one per call: the folded weights are a snapshot of the user's.
    """
    try:
        net = fold_batchnorm(model, keep) if fold else inference_copy(model)
    except Exception:  # deepcopy refused: stay on the (guarded) original, unfolded
        return model
    if channels_last is None:
        channels_last = CHANNELS_LAST.get(_device_of(model).type, False)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # Module.to stubs lack it
        net._convscope_channels_last = True  # type: ignore[assignment]
    return net


def is_channels_last(net: nn.Module) -> bool:
    """Whether ``net`` came from :func:`inference_net` in channels-last format."""
    return bool(getattr(net, "_convscope_channels_last", False))


def as_input_of(net: nn.Module, x: Tensor) -> Tensor:
    """``x`` in the memory format ``net`` (from :func:`inference_net`) runs fastest on."""
    if is_channels_last(net) and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


class FastForward:
    """A folded, inference-mode copy of a model that scores batches of inputs in chunks.

    Build one per method call (``FastForward(model)``); the model itself is only read (deep
    copied). ``fold=False`` skips the folding, not the copy. When the copy cannot be made
    (modules that refuse ``deepcopy``) the model is used as it is, in its own memory format,
    under ``inference_mode``: callers run under ``guarded(model)`` anyway.
    """

    def __init__(self, model: nn.Module, *, fold: bool = True,
                 channels_last: bool | None = None, freeze: bool | None = None) -> None:
        self.device = _device_of(model)
        net = self.net = inference_net(model, fold=fold, channels_last=channels_last)
        self.fold_info = fold_info(net) or FoldInfo()
        self.channels_last = is_channels_last(net)
        self._freeze_auto = freeze is None
        if freeze is None:
            freeze = FREEZE.get(self.device.type, False)
        self._to_freeze = bool(freeze) and net is not model
        self.frozen: torch.jit.ScriptModule | None = None

    def __call__(self, x: Tensor) -> Tensor:
        """Logits for one chunk (an ordinary tensor, usable outside inference mode)."""
        return self._forward(x, may_freeze=True)

    def _forward(self, x: Tensor, may_freeze: bool) -> Tensor:
        x = as_input_of(self.net, x)
        if self._to_freeze and may_freeze:
            self.freeze(x)
        with torch.inference_mode():
            out = (self.frozen or self.net)(x)
        return out

    def freeze(self, example: Tensor) -> bool:
        """Trace the folded copy on ``example``, freeze it and optimize it for inference.

        ``torch.jit.optimize_for_inference`` lets oneDNN fuse each convolution with its
        activation and keep its blocked layout from layer to layer: on EfficientNet-Lite0 on
        this project's CPU it cut the forward from 8.7-9.0 to 6.5-7.0 ms per image (batch 4),
        for 0.3 s of tracing once per call. A trace only records the path this input took, so
        a model whose forward turns a tensor into a Python value (a data-dependent branch: the
        tracer warns) stays eager, and the graph is kept only if it reproduces the eager copy's
        output on the example; an untraceable model simply stays eager. Tried once.
        """
        self._to_freeze = False
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                x = example.clone()
                traced = torch.jit.trace(self.net, x, check_trace=False)
                if any(issubclass(w.category, torch.jit.TracerWarning) for w in caught):
                    return False  # a tensor became a Python value: the graph may hold one branch only
                frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
                want, got = self.net(x), frozen(x)
        except Exception:  # untraceable model: the eager copy is as correct, only slower
            return False
        if (isinstance(got, Tensor) and isinstance(want, Tensor) and got.shape == want.shape
                and torch.allclose(got, want, rtol=1e-3, atol=1e-4 * (1 + float(want.abs().max())))):
            self.frozen = frozen
        return self.frozen is not None

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
        # a call too small to pay for tracing stays eager; a later, larger call may still freeze
        may_freeze = not (self._freeze_auto and total is not None and total < FREEZE_MIN_ROWS)
        out: list[Tensor] = []
        done = 0
        for chunk in chunks:
            logits = self._forward(chunk, may_freeze)
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
    check_positive("batch_size", batch_size, integer=True)
    for start in range(0, inputs.shape[0], batch_size):
        yield inputs[start:start + batch_size]


def fast_forward(model: nn.Module, **options: bool | None) -> FastForward:
    """The fast path for ``model``: ``fast_forward(model).scores(inputs, target, batch_size=...)``."""
    return FastForward(model, **options)  # type: ignore[arg-type]
