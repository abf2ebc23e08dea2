"""The base class every attribution method derives from (DESIGN.md section 2).

A method is bound to a model (and a layer, for layer methods) with its options at construction,
and maps a batch to attributions with one verb, ``attribute(inputs, target)``. ``__call__`` adds
what every method needs and nobody should write twice: eval mode and frozen parameters for the
duration of the call (restored even on error), input checks, and the device of the input.

Output shapes: input-space methods return (B, C, H, W) or (B, 1, H, W) at the input
resolution; layer methods (CAM family) return (B, 1, h, w) at the layer's resolution.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ...errors import BadImage, ConvscopeError, MethodFailed
from ...model import Model, guarded, resolve_layer, select, target_indices
from ...types import Target, TargetFn


class Attribution:
    """An attribution method bound to a model; call it as ``method(inputs, target)``."""

    method_name: ClassVar[str] = "attribution"
    needs_layer: ClassVar[bool] = False

    def __init__(self, model: Model, *, layer: str | None = None) -> None:
        self.model = model
        try:  # "auto" and listing layers run the model
            self.layer = resolve_layer(model, layer or "auto") if self.needs_layer else None
        except ConvscopeError:
            raise
        except Exception as err:
            raise method_failed(self.method_name, model, err, layer) from err

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        """Attributions for model inputs (B, C, H, W); implemented by each method."""
        raise NotImplementedError

    def __call__(self, inputs: Tensor, target: Target = "top1") -> Tensor:
        if not isinstance(inputs, Tensor) or inputs.ndim != 4:
            got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise BadImage(f"inputs of shape {got}: expected a (B, C, H, W) batch from model.preprocess")
        if not torch.isfinite(inputs).all():
            raise BadImage("inputs contain NaN or infinite values")
        with guarded(self.model):
            try:
                return self.attribute(inputs.detach(), target)
            except ConvscopeError:
                raise
            except Exception as err:
                raise method_failed(self.method_name, self.model, err, self.layer, inputs) from err

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
