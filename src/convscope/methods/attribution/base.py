"""The base class every attribution method derives from (DESIGN.md section 2).

A method is bound to a model (and a layer, for layer methods) with its options at construction,
and maps a batch to attributions with one verb, ``attribute(inputs, target)``. ``__call__`` adds
what every method needs and nobody should write twice: eval mode and frozen parameters for the
duration of the call (restored even on error), input checks, and the device of the input.

While a method runs, ``__call__`` keeps the logits of the first forward pass of the model on the
unchanged inputs (:attr:`Attribution.logits`), so a caller such as ``explain()`` reads the target
and its score from them instead of paying another forward pass.

Output shapes: input-space methods return (B, C, H, W) or (B, 1, H, W) at the input
resolution; layer methods (CAM family) return (B, 1, h, w) at the layer's resolution.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor

from ...errors import BadImage, ConvscopeError, MethodFailed
from ...model import Model, guarded, select, target_indices
from ...model.formats import check_format, format_limits
from ...model.layers import pick_layer
from ...types import Target, TargetFn


class Attribution:
    """An attribution method bound to a model; call it as ``method(inputs, target)``."""

    method_name: ClassVar[str] = "attribution"
    needs_layer: ClassVar[bool] = False
    needs_rules: ClassVar[bool] = False
    """Changes backward rules (``model.rules``); refused for formats they cannot act on."""
    logits: Tensor | None = None
    """The model's output (B, classes) on the inputs of the last call as they were, taken from
    the method's own forward pass; ``None`` if it never ran the model on them unchanged. A method
    whose forward runs on a copy of the network (a folded one) may set it itself."""

    def __init__(self, model: Model, *, layer: str | None = None) -> None:
        check_format(model, f"method {self.method_name!r}", hooks=self.needs_layer,
                     rules=self.needs_rules, instead=", ".join(methods_for(model)))
        self.model = model
        try:  # "auto" runs the model
            choice = pick_layer(model, layer or "auto") if self.needs_layer else None
        except ConvscopeError:
            raise
        except Exception as err:
            raise method_failed(self.method_name, model, err, layer) from err
        self.layer = choice.name if choice else None
        self.layer_reason = choice.reason if choice else None
        """Why ``layer`` was read: ``"auto"``'s reason, or that the caller named it."""

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        """Attributions for model inputs (B, C, H, W); implemented by each method."""
        raise NotImplementedError

    def __call__(self, inputs: Tensor, target: Target = "top1") -> Tensor:
        if not isinstance(inputs, Tensor) or inputs.ndim != 4:
            got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise BadImage(f"inputs of shape {got}: expected a (B, C, H, W) batch from model.preprocess")
        if not torch.isfinite(inputs).all():
            raise BadImage("inputs contain NaN or infinite values")
        self.logits = None
        with guarded(self.model), self._keeping_logits(inputs):
            try:
                return self.attribute(inputs.detach(), target)
            except ConvscopeError:
                raise
            except Exception as err:
                raise method_failed(self.method_name, self.model, err, self.layer, inputs) from err

    @contextmanager
    def _keeping_logits(self, inputs: Tensor) -> Iterator[None]:
        """Set :attr:`logits` from the first forward of ``self.model`` whose input batch starts
        with ``inputs`` (methods pass them as they are, or with a baseline appended)."""
        batch = inputs.shape[0]

        def keep(module: Any, args: tuple[Any, ...], output: Any) -> None:
            # copies of the model made during the call (the fast path's folded one) carry this
            # hook too and compute the same logits; a trace must not see the comparison
            if self.logits is not None or not args or torch.jit.is_tracing():
                return
            x = args[0]
            if (isinstance(x, Tensor) and isinstance(output, Tensor) and x.ndim == inputs.ndim
                    and x.shape[0] >= batch and x.shape[1:] == inputs.shape[1:]
                    and x.dtype == inputs.dtype and x.device == inputs.device
                    and torch.equal(x[:batch], inputs)):
                self.logits = output[:batch].detach()

        handle = self.model.register_forward_hook(keep)
        try:
            yield
        finally:
            handle.remove()

    def fixed_target(self, inputs: Tensor, target: Target) -> Tensor | TargetFn:
        """The target as class indices (B,) read on the unperturbed inputs (callables unchanged).

        Methods that run many perturbed or interpolated copies of an input must explain the
        class of the original: ``"top1"`` of a blurred copy is another class.
        """
        if callable(target):
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
        (limits.hooks or not getattr(info.cls, "needs_layer", False))
        and (limits.rules or not getattr(info.cls, "needs_rules", False)))]


def method_failed(method: str, model: Model, err: Exception, layer: str | None = None,
                  inputs: Tensor | None = None) -> MethodFailed:
    """The one-line error for an exception raised inside a method (usually in the model's code).

    Callers chain it with ``from err`` so that ``--debug`` and ``__cause__`` keep the traceback.
    """
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


def repeat_target(target: Tensor | TargetFn, repeats: int) -> Tensor | TargetFn:
    """Indices (B,) -> (B * repeats,) matching ``inputs.repeat_interleave(repeats, 0)``."""
    return target.repeat_interleave(repeats) if isinstance(target, Tensor) else target
