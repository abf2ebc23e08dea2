"""Why a map came out empty: one warning instead of a silent all-zero map (docs/architecture.md,
convention 12).

A perturbation method (occlusion, RISE, LIME, KernelSHAP, Score-CAM) explains how a score changes
across perturbed copies of the input; when the score never changes, every weight it fits is zero
(or, for RISE and Score-CAM, every mask or channel weighs the same). Two causes are common:

* a saturated softmax: the method scores probabilities and the target's is pinned at 1.0 (or 0.0)
  in float32. torchvision's ``inception_v3`` at random init reaches logits of about 1e11, so no
  perturbation moves the probability of its top class;
* a constant output: the target's score does not depend on the input at all here.

A gradient method's map is all zero when the target's score has a zero gradient (the same two
causes, the softmax then inside the model) or when the input equals its baseline.

:func:`warn_unvaried` takes a method's scores (B, n) on its n perturbed copies of each input;
:func:`warn_zero_maps` takes a finished map (B, ...). Both name the samples and the cause, read on
the logits of the unperturbed input (:func:`flat_cause`).
"""

from __future__ import annotations

from torch import Tensor

from ...errors import warn
from ...types import OutputTarget


def _samples(ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:8])) + (", ..." if len(ids) > 8 else "")
    return f"sample{'s' if len(ids) > 1 else ''} {shown}"


def flat_cause(logits: Tensor | None, target: Tensor | OutputTarget | None, *, probabilities: bool,
               option: str | None = None) -> str:
    """The cause of scores that never varied, in words, from the unperturbed logits (B, classes).

    ``probabilities``: the method scored softmax probabilities; ``option`` is the setting that
    scores logits instead (``score='logit'``), named in the advice.
    """
    constant = ("a constant output: the target's score does not depend on the input here (a "
                "zero-initialized head, dead units, or an input equal to its baseline)")
    if not isinstance(logits, Tensor) or logits.ndim != 2 or not isinstance(target, Tensor):
        return constant
    logits = logits.detach().float()
    if not logits.isfinite().all():
        return "a non-finite output: the model's logits hold NaN or infinite values on this input"
    peak = float(logits.abs().amax())
    p = logits.softmax(-1).gather(1, target.to(logits.device).view(-1, 1).long()).flatten()
    saturated = bool(((p == 1) | (p == 0)).any())
    if probabilities and saturated:
        fix = f"; explain the logit ({option})" if option else ""
        return (f"a saturated softmax: the target's probability is {float(p.amax()):.3g} in float32 "
                f"(logits reach {peak:.1e}), so no perturbation moves it{fix}")
    rows_sum_to_one = bool(((logits >= 0) & (logits <= 1)).all() and (logits.sum(1) - 1).abs().amax() < 1e-3)
    if rows_sum_to_one and bool((logits.amax(1) == 1).any()):
        return ("a saturated softmax inside the model: its output is probabilities with one at 1.0, "
                "whose gradient vanishes; explain the logits before the softmax")
    return constant


def warn_unvaried(method: str, scores: Tensor, logits: Tensor | None, target: Tensor | OutputTarget | None,
                  *, probabilities: bool, option: str | None = None, count: int | None = None) -> None:
    """Warn when, for some input, the method's scores (B, n) on its perturbed copies are all equal.

    A method that keeps only each input's lowest and highest score passes those (B, 2) and the
    number of perturbed copies as ``count``; non-finite entries (unscored) are left out.
    """
    if scores.ndim != 2 or scores.shape[1] < 2:
        return
    s = scores.detach().double()
    finite = s.isfinite()
    lo = s.masked_fill(~finite, float("inf")).amin(1)
    hi = s.masked_fill(~finite, float("-inf")).amax(1)
    flat = ((hi == lo) & (finite.sum(1) >= 2)).nonzero().flatten().tolist()
    if not flat:
        return
    cause = flat_cause(logits, target, probabilities=probabilities, option=option)
    warn(f"{method}: the scores of {_samples(flat)} never varied over {count or scores.shape[1]} "
         f"perturbed inputs, so its map there shows nothing (all zero, or equal weights): {cause}")


def warn_zero_maps(method: str, maps: Tensor, logits: Tensor | None,
                   target: Tensor | OutputTarget | None) -> None:
    """Warn when a gradient method's map (B, ...) is exactly zero for some input."""
    if maps.ndim < 2 or not maps.is_floating_point():
        return
    empty = (maps.detach().flatten(1) == 0).all(1).nonzero().flatten().tolist()
    if not empty:
        return
    cause = flat_cause(logits, target, probabilities=False)
    warn(f"{method}: the map of {_samples(empty)} is all zero: the gradient of the target's "
         f"score is exactly zero there: {cause}")
