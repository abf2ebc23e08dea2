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
    * a target object, for outputs that are not one score per class: :class:`Region` (a class of
      a dense (B, C, H, W) output inside a mask or box), :class:`MultiLabel` (several classes of
      a sigmoid output), :class:`Similarity` (cosine similarity of an embedding to a reference).
      These read the model's raw output (a segmenter's dict with ``"out"`` too).

LayerRef
    A dotted module name as in ``model.named_modules()`` (``"_blocks.15._project_conv"``), or
    ``"auto"`` for the last convolution with spatial output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

Reduce = Literal["sum", "mean"]


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


@dataclass(frozen=True, eq=False)
class Region:
    """Class ``cls`` (index or label) of a dense (B, C, H, W) output, summed or averaged
    (``reduce``) over a region given in the input image's pixel coordinates: ``mask`` (H, W)
    bool or 0/1 weights, or ``box`` ``(x0, y0, x1, y1)`` with exclusive ends. The same region
    for every sample of the batch."""

    cls: int | str
    mask: Tensor | None = None
    box: tuple[int, int, int, int] | None = None
    reduce: Reduce = "mean"


@dataclass(frozen=True, eq=False)
class MultiLabel:
    """Several classes of a multi-label (sigmoid) output at once: the sum (or mean, ``reduce``)
    of their logits, or of their sigmoid probabilities with ``probability=True``."""

    classes: tuple[int | str, ...]
    reduce: Reduce = "sum"
    probability: bool = False


@dataclass(frozen=True, eq=False)
class Similarity:
    """Cosine similarity of the model's (B, D) embedding (any output shape, flattened per
    sample) to ``reference``: one embedding (D,), several (N, D) (the mean of the N cosines),
    or model inputs (C, H, W) / (N, C, H, W) that the same model embeds first. ``name`` says
    what the reference is, for the explanation's words."""

    reference: Tensor
    name: str | None = None


TargetObject = Region | MultiLabel | Similarity
"""Target kinds bound into the model a method runs (``select`` on the raw output)."""
TargetFn = Callable[[Tensor], Tensor]
OutputTarget = TargetFn | Detection | TargetObject
"""A target read on the model's whole output each forward, not as class indices."""
Target = int | str | Sequence[int | str] | Tensor | TargetFn | Detection | TargetObject
LayerRef = str
NormalizeFn = Callable[[Tensor], Tensor]
"""Pixels in [0, 1] -> model input (``Model.normalize`` or a user's function)."""
ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: called by long computations; the CLI turns it into a bar."""

RELEVANCE_RECORDS = "#relevance"
"""Suffix of a layer name under which a scan keeps that layer's relevance exemplars (RelMax)
beside its activation exemplars: the scan writes them, the atlas reads them."""

__all__ = ["RELEVANCE_RECORDS", "Detection", "LayerRef", "MultiLabel", "NormalizeFn", "OutputTarget",
           "ProgressFn", "Reduce", "Region", "Similarity", "Target", "TargetFn", "TargetObject"]
