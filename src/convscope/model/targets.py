"""One place that turns every form of :data:`convscope.types.Target` into one score per sample."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import BadTarget
from ..types import Target


def class_index(label: str, labels: Sequence[str] | None) -> int:
    """Index of a class label (case-insensitive; digits are taken as an index)."""
    if label.strip().isdigit():
        return int(label)
    if not labels:
        raise BadTarget(f"target {label!r} is a label but this model has no labels; give a class index")
    wanted = label.strip().lower()
    lowered = [name.lower() for name in labels]
    if wanted in lowered:
        return lowered.index(wanted)
    close = difflib.get_close_matches(wanted, lowered, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(labels[lowered.index(c)]) for c in close)}?" if close else ""
    raise BadTarget(f"target {label!r} is not a class label of this model{hint}")


def target_indices(
    logits: Tensor, target: Target, labels: Sequence[str] | None = None
) -> Tensor | None:
    """Class index per sample as a (B,) long tensor, or ``None`` for a callable target."""
    batch, classes = logits.shape[0], logits.shape[-1]
    if callable(target):
        return None
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
    if callable(target):
        scores = target(logits)
        if not isinstance(scores, Tensor) or scores.shape != (logits.shape[0],):
            got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise BadTarget(
                f"callable target must return one score per sample, shape ({logits.shape[0]},), got {got}"
            )
        return scores
    idx = target_indices(logits, target, labels)
    assert idx is not None
    flat = logits.reshape(logits.shape[0], -1)
    return flat.gather(1, idx[:, None]).squeeze(1)
