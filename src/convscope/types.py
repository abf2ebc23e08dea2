"""Shared type aliases; the meaning of each argument kind is written once, here.

Target
    Which output score to explain or optimize, normalized by :func:`convscope.model.targets.select`:

    * ``int`` -- a class index, the same for every sample;
    * ``str`` -- a class label (``"Egyptian cat"``), matched against the model's labels, or
      ``"top1"`` -- each sample's own highest-scoring class;
    * a sequence of ints/labels -- one target per sample (length B);
    * an integer tensor of class indices, shape () or (B,) -- e.g. ``logits.argmax(1)``;
    * a callable ``logits -> (B,)`` -- any scalar per sample;
    * a :class:`Detection` -- for detectors (torchvision's detection format): the detection that
      best matches a box and a label, scored by its class score.

LayerRef
    A dotted module name as in ``model.named_modules()`` (``"_blocks.15._project_conv"``), or
    ``"auto"`` for the last convolution with spatial output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Detection:
    """A detector's detection to explain: the one that best matches ``box`` and ``label``.

    ``box`` is ``(x0, y0, x1, y1)`` in model-input pixels (torchvision's order); ``label`` a class
    index or label of the model. In each forward (perturbed copies too) the detection of that label
    with the highest IoU with ``box``, at least ``iou_threshold``, is chosen, and its score is the
    sample's score (0 when none matches). ``box_term`` adds that IoU, as pytorch-grad-cam's
    ``FasterRCNNBoxScoreTarget`` does, so the box coordinates are explained too. Interpreted by
    :func:`convscope.model.targets.select` (:mod:`convscope.model.detections`).
    """

    box: tuple[float, float, float, float]
    label: int | str
    iou_threshold: float = 0.5
    box_term: bool = False


TargetFn = Callable[[Tensor], Tensor]
OutputTarget = TargetFn | Detection
"""A target read on the model's whole output each forward, not as class indices."""
Target = int | str | Sequence[int | str] | Tensor | TargetFn | Detection
LayerRef = str
NormalizeFn = Callable[[Tensor], Tensor]
"""Pixels in [0, 1] -> model input (``Model.normalize`` or a user's function)."""
ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: called by long computations; the CLI turns it into a bar."""

RELEVANCE_RECORDS = "#relevance"
"""Suffix of a layer name under which a scan keeps that layer's relevance exemplars (RelMax)
beside its activation exemplars: the scan writes them, the atlas reads them."""

__all__ = ["RELEVANCE_RECORDS", "Detection", "LayerRef", "NormalizeFn", "OutputTarget", "ProgressFn",
           "Target", "TargetFn"]
