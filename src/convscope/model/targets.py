"""One place that turns every form of :data:`convscope.types.Target` into one score per sample."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

import torch
from torch import Tensor

from ..errors import BadArgument, BadTarget
from ..types import Detection, OutputTarget, Target
from .detections import bind_label, check_box, describe, detection_scores, is_detection_output

MAX_CLASS_DIGITS = 9
"""A class index has at most this many digits: a longer one names no class of any model, and
``int()`` of thousands of digits is refused by Python itself."""


def parse_target(text: str) -> int | str:
    """Target text (``--target``, a URL, a form): ``285`` -> class index, ``top1`` stays,
    anything else is a label (``"Egyptian cat"``). The one parser of the CLI, the web and the tasks."""
    text = text.strip()
    if not text.lstrip("-").isdigit():
        return text
    if len(text.lstrip("-")) > MAX_CLASS_DIGITS:
        raise BadTarget(f"target {text[:12]}... ({len(text)} digits) is not a class index; "
                        "give a class index or a label")
    return int(text)


def parse_box(text: str) -> tuple[float, float, float, float]:
    """Box text (``--box``, a form) ``"x0,y0,x1,y1"`` in model-input pixels -> four floats."""
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(v == v and abs(v) != float("inf") for v in values):
        raise BadTarget(f"box {text[:40]!r} is not four numbers x0,y0,x1,y1 (model-input pixels)")
    return values  # type: ignore[return-value]


def reads_output(target: object) -> TypeGuard[OutputTarget]:
    """Whether ``target`` is read on the model's whole output in every forward (a callable, a
    :class:`~convscope.types.Detection`) rather than as fixed class indices."""
    return callable(target) or isinstance(target, Detection)


def detach_output(out: Any) -> Any:
    """A model output cut from its graph: a tensor, or each tensor of a detector's output."""
    if is_detection_output(out):
        return [{key: value.detach() if isinstance(value, Tensor) else value for key, value in d.items()}
                for d in out]
    return out.detach()


def class_index(label: str, labels: Sequence[str] | None) -> int:
    """Index of a class label (case-insensitive; digits are taken as an index)."""
    parsed = parse_target(label)
    if isinstance(parsed, int):
        return parsed
    if not labels:
        raise BadTarget(f"target {label!r} is a label but this model has no labels; give a class index")
    wanted = label.strip().lower()
    lowered = [name.lower() for name in labels]
    if wanted in lowered:
        return lowered.index(wanted)
    close = difflib.get_close_matches(wanted, lowered, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(labels[lowered.index(c)]) for c in close)}?" if close else ""
    raise BadTarget(f"target {label!r} is not a class label of this model{hint}")


def check_class(target: object, labels: Sequence[str] | None, *, top1: bool = True) -> int | str:
    """A user's target (text or a whole number) checked before any work: ``"top1"`` (when
    ``top1``; also for an empty one) or a class index within the model's labels."""
    if top1 and target in (None, "", "top1"):
        return "top1"
    if isinstance(target, str):
        parsed = parse_target(target)
        target = class_index(parsed, labels) if isinstance(parsed, str) else parsed
    if not isinstance(target, int) or isinstance(target, bool):
        kinds = "a class index, a label or 'top1'" if top1 else "a class index or a label"
        raise BadTarget(f"target {target!r} is not understood; give {kinds}")
    if target < 0:
        raise BadTarget(f"target class {target} is out of range: class indices start at 0")
    if labels and target >= len(labels):
        raise BadTarget(f"target class {target} is out of range: the model has {len(labels)} classes")
    return target


def describe_output(out: Any) -> str:
    """A model output in words, for messages: "a dict with keys 'logits', 'aux'", ..."""
    if isinstance(out, Tensor):
        return f"tensor of shape {tuple(out.shape)}"
    if isinstance(out, Mapping):
        return f"{type(out).__name__} with keys {', '.join(map(repr, out))}"
    if dataclasses.is_dataclass(out):
        return f"{type(out).__name__} with fields {', '.join(f.name for f in dataclasses.fields(out))}"
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return f"{type(out).__name__} with fields {', '.join(out._fields)}"
    if isinstance(out, (tuple, list)):
        return f"{type(out).__name__} of {len(out)} items"
    return type(out).__name__


def _not_scores(out: Any) -> BadTarget:
    return BadTarget(f"the model returns a {describe_output(out)}, not a tensor of scores: pass "
                     "model_output= (an index, key or attribute name, or a callable) to pick the "
                     "scores, or a callable target that reads the raw output")


def pick_output(out: Any, which: int | str | Callable[[Any], Tensor], model: str = "model") -> Tensor:
    """The scores tensor inside a model output (tuple, dict, dataclass), chosen by ``which``."""
    if callable(which):
        got = which(out)
    elif (isinstance(which, int) and isinstance(out, (tuple, list)) and -len(out) <= which < len(out)) or (
            isinstance(which, str) and isinstance(out, Mapping) and which in out):
        got = out[which]  # type: ignore[index]
    elif isinstance(which, str) and not isinstance(out, Mapping) and hasattr(out, which):
        got = getattr(out, which)
    else:
        raise BadArgument(f"model_output={which!r} does not pick anything from {model!r}'s output, "
                          f"a {describe_output(out)}")
    if is_detection_output(got):  # a decoded detector output, for Detection targets
        return got  # type: ignore[no-any-return]
    if not isinstance(got, Tensor) or got.ndim == 0:
        raise BadArgument(f"model_output={which!r} picks a {describe_output(got)} from {model!r}'s "
                          "output; it must pick the (B, classes) scores tensor")
    return got


def target_indices(
    logits: Tensor, target: Target, labels: Sequence[str] | None = None
) -> Tensor | None:
    """Class index per sample as a (B,) long tensor, or ``None`` for a target read on the whole
    output (:func:`reads_output`)."""
    if reads_output(target):
        return None
    if not isinstance(logits, Tensor):
        raise _not_scores(logits)
    batch, classes = logits.shape[0], logits.shape[-1]
    if isinstance(target, str):
        if target == "top1":
            return logits.detach().reshape(batch, -1).argmax(1)
        idx = torch.full((batch,), class_index(target, labels), dtype=torch.long)
    elif isinstance(target, (int, torch.SymInt)) and not isinstance(target, bool):
        idx = torch.full((batch,), int(target), dtype=torch.long)
    elif isinstance(target, Tensor) and target.ndim <= 1 and not target.is_floating_point():
        idx = target.reshape(-1).long().cpu()
        if idx.numel() == 1:
            idx = idx.expand(batch).clone()
    elif isinstance(target, Sequence):
        idx = torch.tensor(
            [class_index(t, labels) if isinstance(t, str) else int(t) for t in target],
            dtype=torch.long,
        )
    else:
        raise BadTarget(
            f"target {target!r} is not understood; give an int, a label, 'top1', a list or a callable"
        )
    if idx.numel() != batch:
        raise BadTarget(f"target has {idx.numel()} entries but the batch has {batch} samples")
    bad = idx[(idx < 0) | (idx >= classes)]
    if bad.numel():
        raise BadTarget(f"target class {int(bad[0])} is out of range: the model has {classes} classes")
    return idx.to(logits.device)


def select(logits: Tensor, target: Target, labels: Sequence[str] | None = None) -> Tensor:
    """One score per sample, shape (B,), differentiable w.r.t. ``logits``."""
    if isinstance(target, Detection):
        return detection_scores(logits, bind_label(target, labels))
    if callable(target):
        scores = target(logits)
        batch = logits.shape[0] if isinstance(logits, Tensor) else None
        if not isinstance(scores, Tensor) or scores.ndim != 1 or (batch is not None and len(scores) != batch):
            got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise BadTarget(
                f"callable target must return one score per sample, shape ({batch or 'B'},), got {got}"
            )
        return scores
    idx = target_indices(logits, target, labels)
    assert idx is not None
    flat = logits.reshape(logits.shape[0], -1)
    return flat.gather(1, idx[:, None]).squeeze(1)


def bind_target(target: Target, labels: Sequence[str] | None, size: tuple[int, int] | None) -> Target:
    """A target checked against the model and its (height, width) input before any work: a
    :class:`~convscope.types.Detection`'s label becomes a class index of the model and its box
    must lie inside the input; other targets are returned as they are."""
    if isinstance(target, Detection):
        target = bind_label(target, labels)
        if size is not None:
            check_box(target, *size)
    return target


def explained(out: Any, target: Target, labels: Sequence[str] | None = None) -> list[str] | None:
    """Per sample, what a target that picks a part of the output chose, in words ("detection
    #2: 7 0.81 at (34, 50, 120, 200), IoU 0.93 with the asked box"); refused in one line where it
    finds nothing on the unchanged input. ``None`` for class targets, which the class names say."""
    if isinstance(target, Detection):
        return describe(out, bind_label(target, labels), labels)
    return None
