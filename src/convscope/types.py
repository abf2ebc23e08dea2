"""Shared type aliases; the meaning of each argument kind is written once, here.

Target
    Which output score to explain or optimize, normalized by :func:`convscope.model.targets.select`:

    * ``int`` -- a class index, the same for every sample;
    * ``str`` -- a class label (``"Egyptian cat"``), matched against the model's labels, or
      ``"top1"`` -- each sample's own highest-scoring class;
    * a sequence of ints/labels -- one target per sample (length B);
    * an integer tensor of class indices, shape () or (B,) -- e.g. ``logits.argmax(1)``;
    * a callable ``logits -> (B,)`` -- any scalar per sample.

LayerRef
    A dotted module name as in ``model.named_modules()`` (``"_blocks.15._project_conv"``), or
    ``"auto"`` for the last convolution with spatial output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

TargetFn = Callable[[Tensor], Tensor]
Target = int | str | Sequence[int | str] | Tensor | TargetFn
LayerRef = str
NormalizeFn = Callable[[Tensor], Tensor]
"""Pixels in [0, 1] -> model input (``Model.normalize`` or a user's function)."""
ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: called by long computations; the CLI turns it into a bar."""

RELEVANCE_RECORDS = "#relevance"
"""Suffix of a layer name under which a scan keeps that layer's relevance exemplars (RelMax)
beside its activation exemplars: the scan writes them, the atlas reads them."""

__all__ = ["RELEVANCE_RECORDS", "LayerRef", "NormalizeFn", "ProgressFn", "Target", "TargetFn"]
