"""One place that turns every form of :data:`convscope.types.Target` into one score per sample.

Class targets read (B, classes) scores. Target objects (docs/architecture.md, convention 7) read
the model's raw output: :class:`~convscope.types.Region` a dense (B, C, H, W) tensor (or a
segmenter's dict with ``"out"``, as torchvision's return), :class:`~convscope.types.MultiLabel`
(B, classes) logits, :class:`~convscope.types.Similarity` any per-sample embedding. Methods never
see them: :func:`convscope.model.structured.prepare` binds ``select(raw output, target)`` into the
model the method runs, which then returns the target's (B, 1) scores.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import BadArgument, BadTarget
from ..types import Detection, MultiLabel, OutputTarget, Reduce, Region, Similarity, Target, TargetObject
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


def parse_box(text: str, what: str = "box") -> tuple[float, float, float, float]:
    """Box text (``--box``, ``--region``, a form) ``"x0,y0,x1,y1"`` in model-input pixels -> four
    floats."""
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(v == v and abs(v) != float("inf") for v in values):
        raise BadTarget(f"{what} {text[:40]!r} is not x0,y0,x1,y1: give four numbers in model-input "
                        "pixels, e.g. 10,20,60,70")
    return values  # type: ignore[return-value]


def reads_output(target: object) -> TypeGuard[OutputTarget]:
    """Whether ``target`` is read on the model's whole output in every forward (a callable, a
    :class:`~convscope.types.Detection`, a target object) rather than as fixed class indices."""
    return callable(target) or isinstance(target, Detection) or is_target_object(target)


def detach_output(out: Any) -> Any:
    """A model output cut from its graph: a tensor, or each tensor of a detector's output."""
    if is_detection_output(out):
        return [{key: value.detach() if isinstance(value, Tensor) else value for key, value in d.items()}
                for d in out]
    return out.detach()


def region_target(cls: str | None, *, box: str | None = None, mask: Tensor | None = None,
                  reduce: Reduce = "mean") -> Region:
    """A :class:`Region` from command-line or form text: ``cls`` a class index or label (not
    ``top1``: a region explains one named class), ``box`` ``"x0,y0,x1,y1"`` (whole pixels) or an
    (H, W) mask."""
    parsed = parse_target(cls or "")
    if parsed in ("", "top1"):
        raise BadTarget("a region target needs --target CLASS (a class index or label), not top1")
    corners = None
    if box is not None:
        values = parse_box(box, "region")
        if any(v != int(v) for v in values):
            raise BadTarget(f"region {box[:40]!r} is not x0,y0,x1,y1 in whole pixels: give four whole "
                            "numbers, e.g. 10,20,60,70")
        corners = tuple(int(v) for v in values)
    return Region(parsed, mask=mask, box=corners, reduce=reduce)  # type: ignore[arg-type]


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


def select(logits: Any, target: Target, labels: Sequence[str] | None = None) -> Tensor:
    """One score per sample, shape (B,), differentiable w.r.t. ``logits`` (the model's output;
    its raw form for target objects)."""
    if isinstance(target, Detection):
        return detection_scores(logits, bind_label(target, labels))
    if isinstance(target, Region):
        return _region_scores(logits, target, labels)
    if isinstance(target, MultiLabel):
        return _multilabel_scores(logits, target, labels)
    if isinstance(target, Similarity):
        return _similarity_scores(logits, target)
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


TARGET_OBJECTS = (Region, MultiLabel, Similarity)


def is_target_object(target: object) -> bool:
    """A target kind that reads the raw output (:data:`convscope.types.TargetObject`)."""
    return isinstance(target, TARGET_OBJECTS)


def _class_of(cls: int | str, labels: Sequence[str] | None, classes: int) -> int:
    index = class_index(cls, labels) if isinstance(cls, str) else int(cls)
    if not 0 <= index < classes:
        raise BadTarget(f"target class {index} is out of range: the model has {classes} classes")
    return index


def dense_output(out: Any) -> Tensor:
    """The (B, C, H, W) class scores of a dense model: the tensor itself, or a dict's ``"out"``."""
    if isinstance(out, Mapping) and "out" in out:
        out = out["out"]
    if not isinstance(out, Tensor) or out.ndim != 4:
        raise BadTarget(f"a region target needs a dense (B, C, H, W) output (or a dict with 'out'), "
                        f"but the model returns a {describe_output(out)}; use a class target, or "
                        "pass model_output= to pick the dense scores")
    return out


def region_mask(region: Region, size: tuple[int, int]) -> Tensor:
    """The region as (H, W) float weights in input-image coordinates of ``size`` (H, W)."""
    height, width = size
    if region.mask is not None:
        mask = region.mask.detach()
        mask = mask[0] if mask.ndim == 3 and mask.shape[0] == 1 else mask
        if mask.ndim != 2 or tuple(mask.shape) != (height, width):
            raise BadTarget(f"region mask of shape {tuple(region.mask.shape)} does not match the "
                            f"{height}x{width} input: give an (H, W) mask the size of the model's input")
        mask = mask.float()
    else:
        if region.box is None or len(region.box) != 4:
            raise BadTarget("a region target needs a mask or a box (x0, y0, x1, y1)")
        x0, y0, x1, y1 = (int(v) for v in region.box)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise BadTarget(f"region box {(x0, y0, x1, y1)} is not inside the {width}x{height} input: "
                            "give x0, y0, x1, y1 with 0 <= x0 < x1 <= width, 0 <= y0 < y1 <= height")
        mask = torch.zeros(height, width)
        mask[y0:y1, x0:x1] = 1
    if not (mask != 0).any():
        raise BadTarget("region mask is empty: mark at least one pixel")
    return mask


def _region_scores(out: Any, region: Region, labels: Sequence[str] | None) -> Tensor:
    """Sum (or mean) of class ``cls``'s logits over the region, resized to the output's grid
    (area weights) when the output is coarser than the input."""
    dense = dense_output(out)
    cls = _class_of(region.cls, labels, dense.shape[1])
    size = (int(dense.shape[-2]), int(dense.shape[-1]))
    mask = region_mask(region, size if region.mask is None else tuple(region.mask.shape[-2:]))  # type: ignore[arg-type]
    if tuple(mask.shape) != size:  # a coarser output: each cell weighs the region's share of it
        share = mask.numel() / (size[0] * size[1])
        mask = F.interpolate(mask[None, None], size=size, mode="area")[0, 0] * share
    mask = mask.to(dense)
    total = (dense[:, cls] * mask).sum((1, 2))
    return total / mask.sum() if region.reduce == "mean" else total


def _multilabel_scores(out: Any, target: MultiLabel, labels: Sequence[str] | None) -> Tensor:
    if not isinstance(out, Tensor) or out.ndim != 2:
        raise _not_scores(out) if not isinstance(out, Tensor) else BadTarget(
            f"a multi-label target needs (B, classes) scores, not {describe_output(out)}")
    if not target.classes:
        raise BadTarget("a multi-label target needs at least one class")
    index = torch.tensor([_class_of(c, labels, out.shape[1]) for c in target.classes], device=out.device)
    chosen = out.index_select(1, index)
    chosen = chosen.sigmoid() if target.probability else chosen
    return chosen.sum(1) if target.reduce == "sum" else chosen.mean(1)


def embedding(out: Any) -> Tensor:
    """A per-sample embedding (B, D) of the output (any tensor shape, flattened per sample)."""
    if not isinstance(out, Tensor) or out.ndim < 2:
        raise BadTarget(f"a similarity target needs an embedding tensor (B, D), but the model returns "
                        f"a {describe_output(out)}; pass model_output= to pick the embedding")
    return out.flatten(1)


def _similarity_scores(out: Any, target: Similarity) -> Tensor:
    emb = embedding(out)
    ref = target.reference
    if ref.ndim > 2:
        raise BadTarget("a similarity target's reference images must be embedded first "
                        "(explain() and the methods do it: resolve_target)")
    ref = ref.reshape(-1, ref.shape[-1]) if ref.ndim == 2 else ref[None]
    if ref.shape[-1] != emb.shape[1]:
        raise BadTarget(f"similarity reference has {ref.shape[-1]} features but the model's embedding "
                        f"has {emb.shape[1]}: give an embedding of the same model")
    ref = ref.to(emb)
    return F.cosine_similarity(emb[:, None, :], ref[None], dim=-1).mean(1)


def resolve_target(target: Target, embed: Callable[[Tensor], Any], like: Tensor) -> Target:
    """A target object made ready for the inputs ``like`` before any work: a region checked
    against the (B, C, H, W) inputs and its box made a mask of their size (so a coarser output
    is weighed right); a similarity to reference images (model inputs (C, H, W) or (N, C, H, W))
    made one to their embeddings by ``embed`` (the model, run without autograd)."""
    if isinstance(target, Region):
        if like.ndim != 4:
            raise BadTarget(f"a region target needs (B, C, H, W) image inputs, not {tuple(like.shape)}")
        mask = region_mask(target, (int(like.shape[-2]), int(like.shape[-1])))
        return dataclasses.replace(target, mask=mask)
    if not isinstance(target, Similarity) or target.reference.ndim <= 2:
        return target
    ref = target.reference if target.reference.ndim == like.ndim else target.reference[None]
    if tuple(ref.shape[1:]) != tuple(like.shape[1:]):
        raise BadTarget(f"similarity reference images of shape {tuple(target.reference.shape)} do not "
                        f"match the inputs {tuple(like.shape[1:])}: preprocess them as the inputs")
    with torch.no_grad():
        return Similarity(embedding(embed(ref.to(like))).detach(), target.name)


def describe_target(target: TargetObject, scores: Tensor, labels: Sequence[str] | None,
                    size: tuple[int, int] | None = None) -> list[str]:
    """What a target object explained, in words, one line per sample (``scores`` (B,))."""
    def named(cls: int | str) -> str:
        index = class_index(cls, labels) if isinstance(cls, str) else int(cls)
        return f"class {index}" + (f" {labels[index]!r}" if labels and index < len(labels) else "")

    if isinstance(target, Region):
        shape = size or ((int(target.mask.shape[-2]), int(target.mask.shape[-1]))
                         if target.mask is not None else (1 << 30, 1 << 30))
        pixels = int((region_mask(target, shape) != 0).sum())
        where = f"box {tuple(int(v) for v in target.box)}" if target.box is not None else "a mask"
        return [f"region: {named(target.cls)}, {target.reduce} over {pixels} px of {where}: "
                f"{float(s):.3g}" for s in scores]
    if isinstance(target, MultiLabel):
        kind = "probabilities" if target.probability else "logits"
        names = ", ".join(named(c) for c in target.classes)
        return [f"multi-label: {target.reduce} of the {kind} of {names}: {float(s):.3g}" for s in scores]
    what = f"reference {target.name}" if target.name else "the reference embedding"
    return [f"similarity to {what}: cos {float(s):.2f}" for s in scores]
