"""The inference fast path shared by every method that only runs forward passes.

Occlusion, RISE, Score-CAM, LIME, the deletion/insertion metrics and the dataset scan evaluate
the network on hundreds or thousands of perturbed copies of an image and never differentiate. For
them the model is prepared ONCE PER METHOD CALL (never cached across calls: the user may change
weights between calls) as a :class:`FastForward`:

* a deep copy in eval mode (:func:`~convscope.model.fold.inference_copy`): the user's module is
  never touched, not even put in eval mode (the user's own hooks are copied with it: they may be
  part of what the model computes);
* BatchNorm folded into the convolutions (:mod:`~convscope.model.fold`);
* ``torch.inference_mode`` (no autograd bookkeeping, no version counters);
* channels-last memory format where it was measured to help (:data:`CHANNELS_LAST`);
* on CPU, a frozen TorchScript graph optimized for inference (:meth:`FastForward.freeze`);
* chunked evaluation (:meth:`FastForward.scores`) of a tensor or of a stream of chunks built on
  the fly, ``batch_size`` rows at a time, so memory is bounded by one chunk.

The fallback rule: the fast path never fails where the eager model works, and gives its numbers.
On the FIRST chunk the plain copy (unfolded, NCHW, eager) runs once as the reference, in the same
pass that finds the BN pairs; then the fast variants are tried in turn, folded + channels-last,
folded, channels-last, and the first one that runs and reproduces the reference (up to float
rounding, :func:`same_output`) is kept for every chunk; if none does, the plain copy is. A model
that flattens with ``x.view(-1, n)`` cannot run on a channels-last map, so it keeps the folded
NCHW copy. The frozen graph is built later, only for calls large enough to pay for it, and only
when the dry pass saw no tensor turned into a Python value (a trace would bake in one branch); it
is kept only if it reproduces the eager copy on that chunk and on a chunk of another batch size,
and dropped (the chunk rerun eagerly) if it ever raises. What was dropped and why is in
:attr:`FastForward.dropped`; no warning is issued: the fallback is as correct, only slower.
The check costs one extra forward of the first chunk per call, the plain copy's (on Lite0 the
recording slowed that forward by no measurable amount) plus a few ms of copying. Later chunks are
not checked: a variant that raises on one of them hands over to the plain copy for the rest of
the call.

The thread rule: building and running the fast path changes nothing outside its private copies.
The copy is taken under the model's lock (:func:`~convscope.model.guard.exclusive`), so no other
convscope call's hooks are copied with it; the BN pairs are found with hooks on that copy and a
thread-local ``TorchFunctionMode`` (no process-wide patching); a frozen graph is traced from the
copy (torch's tracing state is per thread). Forwards in other threads run undisturbed.

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
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import BadTarget, check_positive
from ..types import ProgressFn, Target
from .device import device_of
from .fold import (
    FoldInfo,
    Recording,
    example_input,
    fold_info,
    fold_recorded,
    inference_copy,
    kept_names,
    record,
    tensors,
)
from .guard import guarded
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
"""With ``freeze`` left to the device, calls for fewer rows stay eager:
tracing costs ~0.28 s and saves ~2 ms per Lite0 image, so it pays from ~140 rows on."""


def default_batch_size(device: torch.device | str) -> int:
    """Rows per forward pass for perturbation methods when the user gives no ``batch_size``."""
    return CPU_BATCH if torch.device(device).type == "cpu" else ACCELERATOR_BATCH


def inference_net(model: nn.Module, *, fold: bool = True, keep: Iterable[nn.Module] = (),
                  channels_last: bool | None = None, example: Tensor | None = None) -> nn.Module:
    """The copy of ``model`` that forward-only work runs on: eval mode, BN folded, and in
    channels-last memory format on devices where that was measured to help (:data:`CHANNELS_LAST`),
    each only where it reproduces the plain copy on ``example`` (default: one seeded input of the
    model's size, :func:`~convscope.model.fold.example_input`; see the fallback rule above).

    ``keep``: submodules whose outputs must stay as ``model`` computes them (hooked layers; see
    :func:`~convscope.model.fold.fold_batchnorm`). Feed the result inputs through
    :func:`as_input_of`. A model that refuses ``deepcopy`` comes back as it is (callers guard
    it). Build one per call: the folded weights are a snapshot of the user's.
    """
    try:
        plain = inference_copy(model)
    except Exception:  # deepcopy refused: stay on the (guarded) original, unfolded
        return model
    example = example if example is not None else example_input(model)
    if example is None:  # nothing to check a variant against: the plain copy is always right
        return plain
    if channels_last is None:
        channels_last = CHANNELS_LAST.get(device_of(model).type, False)
    try:
        return choose(plain, example, fold=fold, channels_last=channels_last,
                      keep=kept_names(model, keep)).net
    except Exception:  # the model cannot run on the example itself: nothing was checked
        return plain


@dataclass
class Choice:
    """The variant :func:`choose` kept, its output on the example, and what it dropped."""

    net: nn.Module
    output: Any
    recording: Recording | None
    dropped: list[str] = field(default_factory=list)

    @property
    def fold_info(self) -> FoldInfo:
        return fold_info(self.net) or FoldInfo()


def choose(plain: nn.Module, x: Tensor, *, fold: bool, channels_last: bool,
           keep: Iterable[str] = ()) -> Choice:
    """The fastest variant of ``plain`` (a private eval copy) that reproduces it on ``x``.

    Runs ``plain`` once as the reference (recording the BN pairs), then tries folded +
    channels-last, folded, channels-last, in that order, each only when asked for and different
    from ``plain``. Raises only what ``plain`` itself raises on ``x``.
    """
    dropped: list[str] = []
    rec: Recording | None = None
    try:
        with torch.inference_mode():
            want, rec = record(plain, x)
    except Exception as err:  # e.g. a module that refuses hooks: the plain copy decides
        dropped.append(f"fold: the dry pass failed ({_why(err)})")
        with torch.inference_mode():
            want = plain(x)
    can_fold = fold and rec is not None and bool(rec.pairs(dict(plain.named_modules())))
    tried = [(f, c) for f, c in ((True, True), (True, False), (False, True))
             if (can_fold or not f) and (channels_last or not c)]
    for do_fold, do_cl in tried:
        label = " + ".join(n for n, on in (("fold", do_fold), ("channels-last", do_cl)) if on)
        try:
            net = _variant(plain, rec if do_fold else None, do_cl, keep)  # ordinary tensors
            with torch.inference_mode():
                got = net(as_input_of(net, x))
        except Exception as err:
            dropped.append(f"{label}: {_why(err)}")
            continue
        if same_output(got, want):
            return Choice(net, got, rec, dropped)
        dropped.append(f"{label}: changed the output")
    return Choice(plain, want, rec, dropped)


def _variant(plain: nn.Module, rec: Recording | None, channels_last: bool,
             keep: Iterable[str]) -> nn.Module:
    net = inference_copy(plain)  # new parameter objects over the same memory: cheap
    if rec is not None:
        fold_recorded(net, rec, keep)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # Module.to stubs lack it
        net._convscope_channels_last = True  # type: ignore[assignment]
    return net


def same_output(got: object, want: object) -> bool:
    """Whether two raw model outputs agree up to float rounding of reordered arithmetic:
    ``max(1e-3, 16 eps)`` relative, plus a tenth of it times the largest finite magnitude."""
    a, b = list(tensors(got)), list(tensors(want))
    if type(got) is not type(want) or len(a) != len(b):
        return False
    for g, w in zip(a, b):
        if g.shape != w.shape or g.dtype != w.dtype or g.device != w.device:
            return False
        if not w.is_floating_point():
            if not torch.equal(g, w):
                return False
            continue
        rtol = max(1e-3, 16 * torch.finfo(w.dtype).eps)
        finite = w[torch.isfinite(w)]
        scale = float(finite.abs().max()) if finite.numel() else 0.0
        if not torch.allclose(g, w, rtol=rtol, atol=rtol * 0.1 * (1 + scale), equal_nan=True):
            return False
    return True


def _why(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200] if lines else ''}"


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
    copied, under its lock). ``fold=False`` skips the folding, not the copy. The variant is
    chosen on the first chunk (module docstring: the fallback rule); until then :attr:`net` is
    the plain copy. When the copy cannot be made (modules that refuse ``deepcopy``) the model is
    used as it is, in its own memory format, under ``inference_mode`` and :func:`guarded`.
    """

    def __init__(self, model: nn.Module, *, fold: bool = True,
                 channels_last: bool | None = None, freeze: bool | None = None,
                 rows: int | None = None) -> None:
        self.device = device_of(model)
        self.model = model
        self.rows = rows
        """Rows the method will score in all, when it scores them in several small calls (RISE,
        Score-CAM): with ``freeze`` left to the device, their sum decides whether tracing pays."""
        try:
            self.plain: nn.Module | None = inference_copy(model)
        except Exception:  # deepcopy refused
            self.plain = None
        self.net: nn.Module = self.plain if self.plain is not None else model
        self.fold = fold
        self.want_channels_last = (CHANNELS_LAST.get(self.device.type, False)
                                   if channels_last is None else channels_last)
        self.fold_info = FoldInfo()
        self.channels_last = False
        self._dropped: list[str] = []
        self._small = 0
        """Rows of the largest call left eager for its size (``freeze`` left to the device)."""
        self._chosen = self.plain is None
        self._untraceable = "not checked yet"
        """Why a trace would not be the model's function ('' when nothing says so)."""
        self._freeze_auto = freeze is None
        if freeze is None:
            freeze = FREEZE.get(self.device.type, False)
        self._to_freeze = bool(freeze) and self.plain is not None
        self.frozen: torch.jit.ScriptModule | None = None
        self._seen: tuple[Tensor, Any] | None = None
        """The first chunk and the chosen copy's output on it (:meth:`_choose`), which checks a
        frozen graph on a second batch size without another eager forward."""

    @property
    def dropped(self) -> list[str]:
        """Why this call does not run the fastest variant it could (one line each): what the
        fallback rule dropped, why no frozen graph was traced or kept, or that the calls were too
        small to pay for tracing. Empty when nothing was given up."""
        if self._to_freeze and self.frozen is None and self._small:
            return [*self._dropped, f"frozen graph: not built: calls of at most {self._small} rows "
                                    f"(tracing pays from {FREEZE_MIN_ROWS} rows in one call)"]
        return list(self._dropped)

    def __call__(self, x: Tensor) -> Tensor:
        """Logits for one chunk (computed under ``inference_mode``)."""
        return self._forward(x, may_freeze=self._pays(x.shape[0]))

    def _pays(self, rows: int | None) -> bool:
        """Whether a call of ``rows`` (or of the whole call's :attr:`rows`) may freeze (``None``:
        unknown, it may); notes one that may not."""
        if not self._freeze_auto or (rows is None and self.rows is None):
            return True
        rows = max(rows or 0, self.rows or 0)
        if rows >= FREEZE_MIN_ROWS:
            return True
        self._small = max(self._small, rows)
        return False

    def _forward(self, x: Tensor, may_freeze: bool) -> Tensor:
        out = self._choose(x) if not self._chosen else None
        if self._to_freeze and may_freeze:
            frozen = self.freeze(x)
            if frozen is not None:
                out = frozen  # every chunk of this call from the frozen graph, this one too
        return self._run(x) if out is None else out

    def _choose(self, x: Tensor) -> Any:
        """Keep the fastest variant that reproduces the plain copy on ``x``; its output on ``x``."""
        assert self.plain is not None
        self._chosen = True
        choice = choose(self.plain, x, fold=self.fold, channels_last=self.want_channels_last)
        self._use(choice.net)
        self._seen = (x, choice.output)
        self._dropped += choice.dropped
        rec = choice.recording
        if rec is None:
            self._untraceable = "the dry pass failed"
        else:
            self._untraceable = (rec.conversion or "a tensor became a Python value") if rec.converted else ""
        return choice.output

    def _use(self, net: nn.Module) -> None:
        self.net, self.fold_info = net, fold_info(net) or FoldInfo()
        self.channels_last = is_channels_last(net)

    def _run(self, x: Tensor) -> Any:
        if self.plain is None:  # the user's own module: its flags changed only under its lock
            with guarded(self.model), torch.inference_mode():
                return self.model(x)
        with torch.inference_mode():
            if self.frozen is not None:
                try:
                    return self.frozen(as_input_of(self.net, x))
                except Exception as err:  # another input than the traced one: eager from now on
                    self._dropped.append(f"frozen graph: {_why(err)}")
                    self.frozen = None
            if self.net is self.plain:
                return self.net(x)
            try:
                return self.net(as_input_of(self.net, x))
            except Exception as err:  # a variant failing where the first chunk did not
                self._dropped.append(f"{'fold' if self.fold_info.folded else 'channels-last'} "
                                    f"on a later chunk: {_why(err)}")
                self._use(self.plain)
                return self.plain(x)

    def freeze(self, example: Tensor) -> Any:
        """Trace the chosen copy, freeze it and optimize it for inference; the frozen graph's
        output on ``example`` when it is kept (``None``: the call stays eager).

        ``torch.jit.optimize_for_inference`` lets oneDNN fuse each convolution with its
        activation and keep its blocked layout from layer to layer: on EfficientNet-Lite0 on
        this project's CPU it cut the forward from 8.7-9.0 to 6.5-7.0 ms per image (batch 4),
        for 0.3 s of tracing once per call. A trace only records the path this input took, so
        a model whose forward turned a tensor into a Python value in the dry pass (a
        data-dependent branch) stays eager, and the graph is kept only if it reproduces the
        eager copy on the example and on a batch of another size (a loop over the rows would be
        unrolled for one size); an untraceable model simply stays eager. Tried once.

        The other batch is the first chunk the variant was chosen on, whose eager output is
        known, when its size differs (the trace then runs on the smaller of the two); else a
        row of ``example``. The graph's output on ``example`` is this chunk's result: no chunk
        runs twice.
        """
        self._to_freeze = False
        if not self._chosen:
            self._choose(example)
        if self._untraceable or self.plain is None:
            if self.plain is not None:
                self._dropped.append(f"frozen graph: untraceable: {self._untraceable} in the dry "
                                    "pass (a trace would bake in the path this input took)")
            return None
        seen, seen_out = self._seen if self._seen is not None else (example, None)
        self._seen = None
        try:
            with torch.inference_mode(False), torch.no_grad():
                x = as_input_of(self.net, example).clone()
                if seen_out is not None and seen.shape[0] != example.shape[0]:
                    other, other_out = as_input_of(self.net, seen).clone(), seen_out
                else:
                    other = (x[:1] if x.shape[0] > 1 else torch.cat([x, x])).clone()
                    other_out = self.net(other)
                small = other if other.shape[0] < x.shape[0] else x
                traced = torch.jit.trace(self.net, small, check_trace=False)
                frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
                out = frozen(x)
                same = same_output(out, self.net(x)) and same_output(frozen(other), other_out)
        except Exception as err:  # untraceable model: the eager copy is as correct, only slower
            self._dropped.append(f"frozen graph: {_why(err)}")
            return None
        if not same:
            self._dropped.append("frozen graph: changed the output")
            return None
        self.frozen = frozen
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
        # a call too small to pay for tracing stays eager; a later, larger call may still freeze
        may_freeze = self._pays(total)
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
