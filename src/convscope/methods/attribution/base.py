"""The base class every attribution method derives from (docs/architecture.md, section 2).

A method is bound to a model (and a layer, for layer methods) with its options at construction,
and maps a batch to attributions with one verb, ``attribute(inputs, target)``. ``__call__`` adds
what every method needs and nobody should write twice: eval mode and frozen parameters for the
duration of the call (restored even on error), input checks, and the device of the input.

Output shapes: input-space methods return (B, C, H, W) or (B, 1, H, W) at the input
resolution; layer methods (CAM family) return (B, 1, h, w) at the layer's resolution. Video
clips and volumes (B, C, T, H, W) go in as they are (never packed) to every method whose
``clips`` is true, and come out with the time axis: (B, C or 1, T, H, W), (B, 1, t, h, w).

Beyond one image batch (:mod:`convscope.model.structured`): ``inputs`` may be (B, F) tables,
(B, C, L) signals or a tuple of tensors, with ``additional_forward_args`` / ``forward_kwargs``
for the model's forward and ``model_output`` to pick the scores from a tuple, dict or dataclass
output. Such inputs reach :meth:`Attribution.attribute` packed into one (B, N) tensor (while
``self.packing`` says how) and the per-element result comes back as one tensor per input
(a tuple when a tuple went in), each passed through :meth:`Attribution.finish`. Image-only
methods (``images_only``, and every layer method) refuse them with one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor

from ...errors import BadArgument, BadImage, BadLayer, ConvscopeError, MethodFailed
from ...model import Model, guarded, select, target_indices
from ...model.detections import is_detection_output
from ...model.formats import check_format, format_limits
from ...model.guard import own_hook
from ...model.layers import LayerChoice, pick_layer
from ...model.structured import Call, ModelOutput, Packing, conv_ranks, prepare, rank_hint, shape_text
from ...model.targets import detach_output, reads_output
from ...types import OutputTarget, Target
from .baselines import broadcast_to_inputs, make_baseline
from .flat import warn_zero_maps


class Attribution:
    """An attribution method bound to a model; call it as ``method(inputs, target)``."""

    method_name: ClassVar[str] = "attribution"
    needs_layer: ClassVar[bool] = False
    needs_hooks: ClassVar[bool] = False
    """Reads layers through hooks without taking a layer (FullGrad); layer methods always do."""
    needs_rules: ClassVar[bool] = False
    """Changes backward rules (``model.rules``); refused for formats they cannot act on."""
    images_only: ClassVar[bool] = False
    """Whether the method needs (B, C, H, W) images (every layer method does too)."""
    clips: ClassVar[bool] = True
    """Whether the method explains (B, C, T, H, W) clips and volumes (gradient maps keep the
    input's shape; layer maps are (B, 1, t, h, w); perturbations hide space-time windows)."""
    packing: Packing | None = None
    """How structured inputs are packed, during a call on them (``None``: an image batch)."""
    logits: Tensor | None = None
    """The model's output (B, classes) on the inputs of the last call as they were, taken from
    the method's own forward pass; ``None`` if it never ran the model on them unchanged. A method
    whose forward runs on a copy of the network (a folded one) may set it itself."""

    def __init__(self, model: Model, *, layer: str | None = None) -> None:
        check_format(model, f"method {self.method_name!r}", hooks=self.needs_layer or self.needs_hooks,
                     rules=self.needs_rules, instead=", ".join(methods_for(model)))
        self.model = model
        choice = self._resolve_layer(model, layer or "auto") if self.needs_layer else None
        self.layer = choice.name if choice else None
        self.layer_reason = choice.reason if choice else None
        """Why ``layer`` was read: ``"auto"``'s reason, or that the caller named it."""

    def _resolve_layer(self, model: Model, layer: str) -> LayerChoice:
        """The layer to read; ``"auto"`` needs a dry run on an image, which other models refuse."""
        try:
            return pick_layer(model, layer)
        except ConvscopeError:
            raise
        except Exception as err:
            if model.frames is None and conv_ranks(model) == {3}:
                raise BadLayer(f"{self.method_name}: layer {layer!r} needs a trial forward pass of the "
                               f"3-D model {model.name!r}, which takes (B, C, T, H, W) clips: give its "
                               "clip length (--frames T; Preprocess(frames=T) in Python), or name a "
                               "layer") from err
            raise BadLayer(f"{self.method_name}: layer {layer!r} needs a trial forward pass of "
                           f"{model.name!r} on a (1, {model.channels}, {model.input_size[0]}, "
                           f"{model.input_size[1]}) image, which failed ({type(err).__name__}); "
                           "this method explains image models: name a layer of one, or use a "
                           "gradient or perturbation method") from err

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        """Attributions for model inputs (B, C, H, W); implemented by each method."""
        raise NotImplementedError

    def __call__(self, inputs: Tensor | Sequence[Tensor], target: Target = "top1", *,
                 additional_forward_args: Any = None, forward_kwargs: Mapping[str, Any] | None = None,
                 model_output: ModelOutput = None) -> Any:
        """Attributions for ``inputs``: a tensor, or a tuple with one tensor per input tensor."""
        self.logits = None
        with self.running(inputs, target, additional_forward_args=additional_forward_args,
                          forward_kwargs=forward_kwargs, model_output=model_output) as call:
            with self._keeping_logits(call.model, call.inputs):
                try:
                    out = self.attribute(call.inputs.detach(), call.target)
                except ConvscopeError:
                    raise
                except Exception as err:
                    raise method_failed(self.method_name, self.model, err, self.layer,
                                        call.inputs) from err
                self._check_empty(out, call.target)
            return out if call.packing is None else call.packing.result(out, self.finish)

    def _check_empty(self, out: object, target: Target) -> None:
        """Warn when a gradient or decomposition method returns an all-zero map for an input
        (:mod:`.flat`); perturbation methods check their scores themselves."""
        from ..registry import REGISTRY

        info = REGISTRY.get(self.method_name)
        if info is None or info.family not in ("gradient", "decomposition") or not isinstance(out, Tensor):
            return
        idx = None
        if self.logits is not None and not reads_output(target):
            try:
                idx = target_indices(self.logits, target, self.model.labels)
            except ConvscopeError:
                idx = None
        warn_zero_maps(self.method_name, out, self.logits, idx)

    @contextmanager
    def _keeping_logits(self, model: Model, inputs: Tensor) -> Iterator[None]:
        """Set :attr:`logits` from the first forward of ``model`` whose input batch starts
        with ``inputs`` (methods pass them as they are, or with a baseline appended)."""
        batch = inputs.shape[0]

        def keep(module: Any, args: tuple[Any, ...], output: Any) -> None:
            # copies of the model made during the call (the fast path's folded one) carry this
            # hook too and compute the same logits; a trace must not see the comparison
            if self.logits is not None or not args or torch.jit.is_tracing():
                return
            x = args[0]
            if (isinstance(x, Tensor) and (isinstance(output, Tensor) or is_detection_output(output))
                    and x.ndim == inputs.ndim and x.shape[0] >= batch and x.shape[1:] == inputs.shape[1:]
                    and x.dtype == inputs.dtype and x.device == inputs.device
                    and torch.equal(x[:batch], inputs)):
                self.logits = detach_output(output[:batch])

        handle = model.register_forward_hook(own_hook(keep))  # the fast path's dry pass skips it
        try:
            yield
        finally:
            handle.remove()

    @contextmanager
    def running(self, inputs: Tensor | Sequence[Tensor], target: Target,
                **call_options: Any) -> Iterator[Call]:
        """The model guarded and this method (and the methods it wraps) bound to the call's inputs.

        ``call.inputs`` is the batch tensor to hand to :meth:`attribute`, ``call.target`` the target.
        """
        with guarded(self.model):
            self.check_inputs(inputs)
            call = prepare(self.model, inputs, target, method=self.method_name, **call_options)
            methods = self._methods()
            saved = [(m, m.model) for m in methods]
            try:
                for m in methods:
                    m.model, m.packing = call.model, call.packing
                yield call
            finally:
                for m, model in saved:
                    m.model = model
                    m.__dict__.pop("packing", None)

    def _methods(self) -> list[Attribution]:
        """This method and every method it wraps (SmoothGrad's base, Guided Grad-CAM's parts)."""
        found: dict[int, Attribution] = {}
        todo: list[Attribution] = [self]
        while todo:
            m = todo.pop()
            if id(m) not in found:
                found[id(m)] = m
                todo.extend(v for v in vars(m).values() if isinstance(v, Attribution))
        return list(found.values())

    def check_inputs(self, inputs: object) -> None:
        """Refuse inputs other than one image batch (or clip batch, for methods that take clips),
        in one line, if this method needs images."""
        methods = self._methods()
        if isinstance(inputs, Tensor) and inputs.ndim == 5:
            if all(m.clips for m in methods):
                return
            raise BadImage(f"{self.method_name} explains (B, C, H, W) images, not the (B, C, T, H, W) "
                           f"clips {tuple(inputs.shape)}; for clips use {', '.join(clip_methods())}")
        if not any(m.images_only or m.needs_layer for m in methods):
            return
        if isinstance(inputs, Tensor) and inputs.ndim == 4:
            return
        parts: list[object] = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
        tensors = [p for p in parts if isinstance(p, Tensor)]
        got = shape_text(tensors) if len(tensors) == len(parts) else type(inputs).__name__
        raise BadImage(f"{self.method_name} explains one (B, C, H, W) image batch, not inputs of shape "
                       f"{got}; for tables, signals or several inputs use saliency, gradient_x_input, "
                       "integrated_gradients, smoothgrad, deeplift, lrp, occlusion, lime or the SHAP methods "
                       "(gradient_shap, deeplift_shap, kernel_shap)")

    def finish(self, part: Tensor) -> Tensor:
        """One input's share of the per-element attributions of a packed call, as returned."""
        return part

    def per_input(self, inputs: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """``fn`` (one input tensor -> a tensor broadcastable to it) on each input of the batch."""
        if self.packing is not None:
            return self.packing.map(inputs, fn)
        return fn(inputs).expand_as(inputs)

    def given_tensor(self, given: Tensor | Sequence[Tensor], inputs: Tensor, name: str) -> Tensor:
        """A user's baseline/reference tensor (one per input for several inputs), as ``inputs``."""
        if self.packing is not None:
            return self.packing.like(given, inputs, name)
        if not isinstance(given, Tensor):
            raise BadArgument(f"{name}: give a tensor broadcastable to the inputs {tuple(inputs.shape)}")
        return broadcast_to_inputs(given, inputs, name)

    def baseline_for(self, inputs: Tensor, baseline: Any, *, sigma: float = 10.0, seed: int = 0,
                     name: str = "baseline") -> Tensor:
        """The baseline of every input of the call, shaped as ``inputs`` (the one vocabulary of
        :mod:`.baselines`): a word is made for each input tensor, a user's tensor (one per input
        for several inputs) is checked against its input."""
        if isinstance(baseline, (tuple, list)) or (isinstance(baseline, Tensor) and self.packing is not None):
            return self.given_tensor(baseline, inputs, name)
        if isinstance(baseline, Tensor):
            return make_baseline(self.model, inputs, baseline, name=name)
        return self.per_input(inputs, lambda x: make_baseline(self.model, x, baseline, sigma=sigma,
                                                              seed=seed, name=name))

    def fixed_target(self, inputs: Tensor, target: Target) -> Tensor | OutputTarget:
        """The target as class indices (B,) read on the unperturbed inputs (callables unchanged).

        Methods that run many perturbed or interpolated copies of an input must explain the
        class of the original: ``"top1"`` of a blurred copy is another class.
        """
        if reads_output(target):
            return target
        with torch.no_grad():
            logits = self.model(inputs)
        idx = target_indices(logits, target, self.model.labels)
        assert idx is not None
        return idx

    def scores(self, logits: Tensor, target: Target) -> Tensor:
        """One score per sample for the target (labels of the model understood)."""
        return select(logits, target, self.model.labels)


def methods_for(model: Model) -> list[str]:
    """The registered methods that ``model``'s format allows (TorchScript, exported programs)."""
    from ..registry import REGISTRY

    limits = format_limits(model)
    return [name for name, info in REGISTRY.items() if limits is None or (
        (limits.hooks or not (info.cls.needs_layer or info.cls.needs_hooks))
        and (limits.rules or not getattr(info.cls, "needs_rules", False)))]


def clip_methods() -> list[str]:
    """The registered methods that explain (B, C, T, H, W) clips."""
    from ..registry import REGISTRY

    return [name for name, info in REGISTRY.items() if info.cls.clips]


def method_failed(method: str, model: Model, err: Exception, layer: str | None = None,
                  inputs: Tensor | None = None) -> MethodFailed:
    """The one-line error for an exception raised inside a method (usually in the model's code).

    Callers chain it with ``from err`` so that ``--debug`` and ``__cause__`` keep the traceback.
    """
    hint = rank_hint(model, inputs) if inputs is not None else None
    if hint is not None:
        return MethodFailed(f"{method}: {hint}")
    at = f" at layer {layer!r}" if layer and layer != "auto" else ""
    shape = f" with inputs of shape {tuple(inputs.shape)}" if inputs is not None else ""
    detail = (str(err).strip().splitlines() or [""])[0][:300]
    return MethodFailed(
        f"{method} failed on model {getattr(model, 'name', type(model).__name__)!r}{at}{shape}: "
        f"{type(err).__name__}: {detail}. Check that the model runs on these inputs (model(x)) and "
        "try a smaller batch_size, another layer or another method")


def input_gradient(model: Model, inputs: Tensor, target: Target) -> tuple[Tensor, Tensor]:
    """d score / d input for a batch, and the scores, with ``autograd.grad`` (param.grad untouched)."""
    x = inputs.detach().requires_grad_(True)
    scores = select(model(x), target, model.labels)
    (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad, scores.detach()


def rows_view(values: Tensor, like: Tensor) -> Tensor:
    """One value per row (n,) shaped to broadcast against rows of ``like`` (n, ...)."""
    return values.view(-1, *[1] * (like.ndim - 1))


def total_per_sample(attributions: Tensor | Sequence[Tensor]) -> Tensor:
    """Sum of the attributions of each sample over every element (and input), (B,)."""
    parts = [attributions] if isinstance(attributions, Tensor) else list(attributions)
    return torch.stack([p.flatten(1).sum(1) for p in parts]).sum(0)


def repeat_target(target: Tensor | OutputTarget, repeats: int) -> Tensor | OutputTarget:
    """Indices (B,) -> (B * repeats,) matching ``inputs.repeat_interleave(repeats, 0)``."""
    return target.repeat_interleave(repeats) if isinstance(target, Tensor) else target
