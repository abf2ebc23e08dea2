"""``evaluate``: how faithful attribution maps are, per method (the numbers; no table, no files).

For each method and image: deletion and insertion AUC (Petsiuk et al. 2018; lower deletion and
higher insertion are better), and, when a box is given for each image, the pointing game (15 px
tolerance), the energy inside the box and the IoU of the CAM box. With ``sanity=True`` the
cascading randomization test (Adebayo et al. 2018) runs on a copy of the model for
``sanity_steps`` steps from the logits down.

Targets are resolved once, from one forward pass of the fast path that the deletion and
insertion curves reuse; every method then explains those class indices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import BadArgument, ConvscopeError, check_positive
from ..methods.evaluation.metrics import MetricInput, Need, available, get_metric, metric_list
from ..methods.evaluation.sanity import SanityResult, cascading_randomization
from ..methods.registry import get_method, method_list
from ..model import FastForward, Model, target_indices
from ..render.notebook import table_html
from ..types import ProgressFn, Target
from .explain import explain
from .inputs import Images, as_images

Box = tuple[float, float, float, float]
"""(top, left, bottom, right) in pixels; bottom and right exclusive, like slicing."""


@dataclass
class MethodScores:
    """Every metric of one method: per image, or the error that stopped it."""

    method: str
    layer: str | None = None
    seconds: float = 0.0
    per_image: dict[str, list[float]] = field(default_factory=dict)
    sanity: SanityResult | None = None
    error: str | None = None

    def means(self) -> dict[str, float]:
        return {k: round(sum(v) / len(v), 4) for k, v in self.per_image.items()}

    def summary(self) -> dict[str, Any]:
        """JSON-ready: means as ``<metric>_mean``, per-image values, the sanity steps."""
        if self.error is not None:
            return {"method": self.method, "error": self.error}
        row: dict[str, Any] = {"method": self.method, "layer": self.layer,
                               "seconds": round(self.seconds, 4)}
        row |= {f"{k}_mean": v for k, v in self.means().items()}
        count = len(next(iter(self.per_image.values()), []))
        row["per_image"] = [{k: round(v[i], 4) for k, v in self.per_image.items()}
                            for i in range(count)]
        if self.sanity is not None:
            check = self.sanity
            row["sanity"] = {"lowest_spearman": round(check.lowest, 4), "flagged": check.flagged,
                             "threshold": check.threshold,
                             "steps": [{k: round(v, 4) if isinstance(v, float) else v
                                        for k, v in r.items()} for r in check.rows()]}
        return row


@dataclass
class Evaluation:
    """The scores of every method on one batch of images."""

    model: str
    targets: Tensor
    target_labels: list[str]
    boxes: Tensor | None
    """(B, 4) boxes in model-input pixels, or None."""
    steps: int
    methods: list[MethodScores]

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "steps": self.steps, "targets": self.targets.tolist(),
                "target_labels": self.target_labels,
                "boxes": self.boxes.tolist() if self.boxes is not None else None,
                "methods": [m.summary() for m in self.methods]}

    def _repr_html_(self) -> str:
        """One row per method: the mean of each metric, the sanity check, or the error."""
        metrics = list(dict.fromkeys(k for m in self.methods for k in m.per_image))
        sanity = any(m.sanity is not None for m in self.methods)
        header = ["method", "layer", "seconds", *(f"{k} (mean)" for k in metrics)]
        header += ["lowest Spearman", "flagged"] if sanity else []
        rows: list[list[object]] = []
        for m in self.methods:
            if m.error is not None:
                rows.append([m.method, f"error: {m.error}"])
                continue
            means = m.means()
            row: list[object] = [m.method, m.layer, round(m.seconds, 3), *(means.get(k) for k in metrics)]
            if sanity:
                row += [None, None] if m.sanity is None else [round(m.sanity.lowest, 4), m.sanity.flagged]
            rows.append(row)
        targets = ", ".join(dict.fromkeys(self.target_labels))
        caption = (f"{self.model}: {len(self.targets)} images ({targets}), {self.steps} steps; "
                   "deletion AUC lower and insertion AUC higher is more faithful")
        return table_html(header, rows, caption)


def check_box(box: Sequence[float], image: Tensor, name: str = "box") -> Box:
    """A box in original image pixels, checked against the image's size."""
    if len(box) != 4:
        raise BadArgument(f"{name} {list(box)}: give TOP, LEFT, BOTTOM, RIGHT, four numbers")
    top, left, bottom, right = (float(v) for v in box)
    height, width = image.shape[-2:]
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise BadArgument(f"{name} {[top, left, bottom, right]} does not fit the {width}x{height} "
                          f"image: need 0 <= TOP < BOTTOM <= {height} and 0 <= LEFT < RIGHT <= {width}")
    return top, left, bottom, right


def scale_box(box: Box, seen: tuple[float, float, float, float], size: tuple[int, int]) -> list[int]:
    """A box in original pixels -> model-input pixels, through ``seen``, the part of the image the
    model saw (``Preprocess.box``: crop, letterbox or whole image); grown outwards to whole
    pixels and clipped to the input (a box partly outside a crop keeps its visible part)."""
    sy, sx = size[0] / (seen[2] - seen[0]), size[1] / (seen[3] - seen[1])
    top, left, bottom, right = box
    eps = 1e-6  # 300 * (224 / 400) is 168.00000000000003 in floating point, not 169
    out = [math.floor((top - seen[0]) * sy + eps), math.floor((left - seen[1]) * sx + eps),
           math.ceil((bottom - seen[0]) * sy - eps), math.ceil((right - seen[1]) * sx - eps)]
    return [min(max(v, 0), size[i % 2]) for i, v in enumerate(out)]


def faithfulness_scores(model: Model, x: Tensor, maps: Tensor, targets: Tensor, steps: int,
                        fast: FastForward | None = None) -> dict[str, list[float]]:
    """Deletion and insertion AUC per image, through the metric registry (the report and the web
    explainer show them)."""
    data = MetricInput(model, x, maps, targets, fast if fast is not None else FastForward(model),
                       steps=steps)
    return {name: get_metric(name)(data).tolist() for name in ("deletion_auc", "insertion_auc")}


def evaluate(
    model: Model,
    images: Images,
    methods: str | Sequence[str] = "all",
    *,
    target: Target = "top1",
    layer: str = "auto",
    boxes: Sequence[Sequence[float]] | None = None,
    steps: int = 100,
    metrics: str | Sequence[str] | None = None,
    sanity: bool = False,
    sanity_steps: int = 5,
    options: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> Evaluation:
    """Score each method's maps on the images.

    ``boxes``: one (top, left, bottom, right) per image in ORIGINAL image pixels (scaled to the
    model's input here). ``metrics``: names or groups of the metric registry
    (:mod:`convscope.methods.evaluation.metrics`); by default deletion and insertion AUC, and the
    box metrics when boxes are given. ``options`` go to every method. A method that fails is
    recorded with its error when several run; a single method's error is raised.
    """
    check_positive("steps", steps, integer=True)
    check_positive("sanity_steps", sanity_steps, integer=True)
    names = method_list(methods)
    chosen = metric_list(metrics if metrics is not None else (
        ["deletion_auc", "insertion_auc"] + (["pointing_game", "energy", "iou"] if boxes else [])))
    pictures = as_images(images)
    if boxes is not None and len(boxes) != len(pictures):
        raise BadArgument(f"{len(boxes)} boxes for {len(pictures)} images: give one box per "
                          "image, in the order of the images")
    given = [check_box(b, img) for b, img in zip(boxes or [], pictures)]
    x = model.preprocess(pictures)
    box_tensor = None
    if given:
        box_tensor = torch.tensor([scale_box(b, model.spec.box(*img.shape[-2:]), model.input_size)
                                   for b, img in zip(given, pictures)], device=x.device)
    fast = FastForward(model)
    targets = target_indices(fast(x), target, model.labels)
    if targets is None:
        raise BadArgument("evaluate needs class targets (an index, a label or top1), not a callable")
    check_needs(chosen, available(region=box_tensor is not None), "give --box for each image")
    rows = score_methods(model, x, names, targets, chosen, layer=layer, boxes=box_tensor, steps=steps,
                         fast=fast, sanity_steps=sanity_steps if sanity else 0, options=options,
                         progress=progress)
    return Evaluation(model.name, targets.cpu(), [model.label(int(t)) for t in targets],
                      box_tensor.cpu() if box_tensor is not None else None, steps, rows)


def check_needs(metrics: Sequence[str], have: AbstractSet[Need], fix: str) -> None:
    """Refuse, before any method runs, a metric that needs what ``have`` lacks (one line that
    names the metric, the missing input and ``fix``, how to give it)."""
    for name in metrics:
        reason = get_metric(name).missing(have)
        if reason is not None:
            raise BadArgument(f"{reason}; {fix}, or leave {name} out")


def score_methods(model: Model, x: Tensor, names: Sequence[str], targets: Tensor, metrics: Sequence[str],
                  *, layer: str = "auto", boxes: Tensor | None = None, masks: Tensor | None = None,
                  steps: int = 100, fast: FastForward | None = None, sanity_steps: int = 0,
                  options: dict[str, Any] | None = None, progress: ProgressFn | None = None,
                  keep_errors: bool | None = None) -> list[MethodScores]:
    """Every metric of every method on one batch (``evaluate`` and the leaderboard's batches).

    A method that fails is recorded with its error when ``keep_errors`` (default: when several
    run), else raised. ``boxes`` (B, 4) and ``masks`` (B, H, W) are in model-input pixels.
    """
    keep = len(names) > 1 if keep_errors is None else keep_errors
    fast = fast if fast is not None else FastForward(model)
    rows = []
    for i, name in enumerate(names):
        try:
            rows.append(_score(model, x, name, targets, layer, boxes, masks, steps, fast,
                               sanity_steps, options or {}, metrics))
        except ConvscopeError as err:
            if not keep:
                raise
            rows.append(MethodScores(name, error=str(err)))
        if progress is not None:
            progress(i + 1, len(names))
    return rows


def _score(model: Model, x: Tensor, method: str, targets: Tensor, layer: str, boxes: Tensor | None,
           masks: Tensor | None, steps: int, fast: FastForward, sanity_steps: int,
           options: dict[str, Any], metrics: Sequence[str]) -> MethodScores:
    """Every chosen metric for one method on the batch."""
    needs_layer = get_method(method).needs_layer
    kwargs = dict(method=method, target=targets, layer=layer if needs_layer else "auto", **options)
    result = explain(model, x, **kwargs)
    data = MetricInput(model, x, result.maps, targets, fast, boxes=boxes, masks=masks, steps=steps,
                       explain=lambda m, inputs, t: explain(m, inputs, **(kwargs | {"target": t})).maps)
    per = {name: get_metric(name)(data).tolist() for name in metrics}
    check = None
    if sanity_steps:
        check = cascading_randomization(model, x, method, targets,
                                        layer=layer if needs_layer else None,
                                        max_steps=sanity_steps, **options)
    return MethodScores(method, result.layer, result.seconds, per, check)
