"""The metric registry: every score of an attribution map, by name, with its direction and needs.

``evaluate``, the leaderboard, the CLI and the web app read metrics only through this registry,
so a metric is added in one place (a function and one :func:`register_metric` call) and every
caller gets it, with its direction for ranking and its paper for the docs.

A metric takes one :class:`MetricInput` (a batch of model inputs, the maps a method made for
them, the class targets, and what some metrics need besides) and returns one float per image,
shape (B,). What a metric needs that a call lacks (a box or mask for localization metrics, the
method itself for robustness and randomization metrics) is refused in one line that names the
metric and the missing input, before any work.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor

from ...errors import BadArgument
from ...model import FastForward, Model
from . import complexity, confidence, randomization, regions, robustness
from .faithfulness import box_mask, deletion, insertion, localization_iou
from .road import road

Group = Literal["faithfulness", "robustness", "localization", "complexity", "randomization"]
GROUPS: tuple[Group, ...] = ("faithfulness", "robustness", "localization", "complexity", "randomization")
Need = Literal["region", "explain"]
"""``region``: a box or mask per image; ``explain``: the method, to re-run on changed inputs or models."""

Explainer = Callable[[Model, Tensor, Tensor], Tensor]
"""``(model, inputs, targets) -> maps``: the method under evaluation, with its options, re-run on
other inputs (robustness: noisy copies, the targets repeated), on a changed copy of the model
(randomization) or for other classes (random logit). ``targets``: (N,) class indices."""


def available(*, region: bool, explain: bool = True) -> frozenset[Need]:
    """The optional inputs a call will carry, for :meth:`Metric.missing` before any work."""
    have: set[Need] = set()
    if region:
        have.add("region")
    if explain:
        have.add("explain")
    return frozenset(have)


@dataclass(frozen=True)
class MetricInput:
    """Everything a metric may read; metrics declare in ``needs`` which optional parts they use."""

    model: Model
    inputs: Tensor
    """(B, C, H, W) model inputs (after preprocessing)."""
    maps: Tensor
    """(B, C', h, w) the method's maps for ``inputs``, at any resolution."""
    targets: Tensor
    """(B,) class indices the maps explain."""
    fast: FastForward
    """The inference fast path on ``model``'s weights, shared by every forward-only metric."""
    boxes: Tensor | None = None
    """(B, 4) (top, left, bottom, right) in input pixels, exclusive ends."""
    masks: Tensor | None = None
    """(B, H, W) bool object masks in input pixels."""
    explain: Explainer | None = None
    steps: int = 100
    """Steps of curve metrics (deletion, insertion, ROAD ...)."""
    seed: int = 0
    shared: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Results that several metrics read, computed once per input (:meth:`once`)."""

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for, its result after that: Average Drop
        and Increase in Confidence come from the same masked forward pass."""
        if key not in self.shared:
            self.shared[key] = compute()
        return self.shared[key]

    def region(self) -> Tensor:
        """(B, 1, H, W) bool: the object mask, or the box as a mask when only boxes are given."""
        size = (self.inputs.shape[-2], self.inputs.shape[-1])
        if self.masks is not None:
            return self.masks.to(self.inputs.device).bool().view(-1, 1, *size)
        if self.boxes is None:
            raise BadArgument("this metric needs a box or mask per image")
        return box_mask(self.boxes.long(), size, self.inputs.device)

    def available(self) -> frozenset[Need]:
        """What of the optional inputs this call carries."""
        return available(region=self.boxes is not None or self.masks is not None,
                         explain=self.explain is not None)


@dataclass(frozen=True)
class Metric:
    """A registered metric: how to compute it, which way is better, and where it comes from."""

    name: str
    group: Group
    higher_is_better: bool
    paper: str
    """Authors, year and title (and section), as the docs and the leaderboard cite it."""
    compute: Callable[[MetricInput], Tensor]
    needs: frozenset[Need] = frozenset()
    summary: str = ""
    """One line: what it measures and what it assumes."""
    alias_of: str | None = None
    """The metric this one is another name for (the same number): left out of groups and "all",
    and a call naming both gets one column."""

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def missing(self, have: AbstractSet[Need]) -> str | None:
        """Why a call that carries ``have`` cannot be scored by this metric (one line), or None."""
        for need in sorted(self.needs - have):
            what = ("a box or mask for each image" if need == "region"
                    else "the method itself (to re-run it)")
            return f"metric {self.name!r} needs {what}"
        return None

    def __call__(self, data: MetricInput) -> Tensor:
        """(B,) float scores; a missing input is refused in one line."""
        reason = self.missing(data.available())
        if reason is not None:
            raise BadArgument(reason)
        return self.compute(data).detach().float().reshape(-1).cpu()


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Make ``metric`` available by name (a name registered twice is a programming error)."""
    if metric.name in METRICS:
        raise RuntimeError(f"metric {metric.name!r} registered twice")
    if metric.group not in GROUPS:
        raise RuntimeError(f"metric {metric.name!r}: unknown group {metric.group!r}")
    METRICS[metric.name] = metric
    return metric


def metric_names(group: Group | None = None) -> list[str]:
    """Names of every registered metric (of one group), in registration order, aliases left out."""
    return [n for n, m in METRICS.items() if m.alias_of is None and (group is None or m.group == group)]


def get_metric(name: str) -> Metric:
    """The metric called ``name`` (did-you-mean error otherwise)."""
    if name in METRICS:
        return METRICS[name]
    close = difflib.get_close_matches(name, list(METRICS), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"choose from {', '.join(METRICS)}"
    raise BadArgument(f"metric {name!r} is not known; {hint}")


def metric_list(spec: str | Sequence[str]) -> list[str]:
    """``"all"``, a group name, ``"a,b"`` or a list (names and groups mixed) -> checked names."""
    parts = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for part in filter(None, parts):
        if part == "all":
            names += metric_names()
        elif part in GROUPS:
            names += metric_names(part)  # type: ignore[arg-type]
        else:
            names.append(get_metric(part).name)
    if not names:
        raise BadArgument(f"no metric given; name one or more of {', '.join(METRICS)}, "
                          f"a group ({', '.join(GROUPS)}) or all")
    first: dict[str, str] = {}  # one name per number: the first given of a metric and its aliases
    for name in names:
        first.setdefault(METRICS[name].alias_of or name, name)
    return list(first.values())


def _curve(mode: Literal["deletion", "insertion"]) -> Callable[[MetricInput], Tensor]:
    run = deletion if mode == "deletion" else insertion

    def compute(d: MetricInput) -> Tensor:
        return run(d.model, d.inputs, d.maps, d.targets, steps=d.steps, fast=d.fast, seed=d.seed).auc

    return compute


def _boxes_of(d: MetricInput) -> Tensor:
    """Boxes, or the bounding box of each mask (box metrics on mask-only data)."""
    if d.boxes is not None:
        return d.boxes
    from .localization import mask_boxes
    return mask_boxes(d.region()[:, 0])


_RISE = 'Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for Explanation", Sec. 4.1'
register_metric(Metric(
    "deletion_auc", "faithfulness", False, _RISE, _curve("deletion"),
    summary="area under the target probability as the top-ranked pixels turn black"))
register_metric(Metric(
    "insertion_auc", "faithfulness", True, _RISE, _curve("insertion"),
    summary="area under the target probability as the top-ranked pixels return to a blurred copy"))
register_metric(Metric(
    "pointing_game", "localization", True,
    'Zhang et al. 2018, "Top-down Neural Attention by Excitation Backprop", Sec. 5.1',
    lambda d: regions.pointing_hits(d.maps, d.region()).float(), frozenset({"region"}),
    summary="1 when every maximum of the map lies within 15 px of the box or mask"))
register_metric(Metric(
    "iou", "localization", True, 'Zhou et al. 2016, "Learning Deep Features for Discriminative '
    'Localization", Sec. 3 (20% threshold box)',
    lambda d: localization_iou(d.maps, _boxes_of(d)), frozenset({"region"}),
    summary="IoU of the box around the map's largest region above 20% of its peak, with the box"))



# -- issue 22: the standard metrics (each module's docstring gives the definition and the paper) --

def _needs_explain(d: MetricInput) -> Explainer:
    assert d.explain is not None  # Metric.__call__ refused the call otherwise
    return d.explain


def _confidence_change(d: MetricInput) -> tuple[Tensor, Tensor]:
    return d.once("confidence_change", lambda: confidence.confidence_change(
        d.model, d.inputs, d.maps, d.targets, d.fast))  # type: ignore[no-any-return]


def _size(d: MetricInput) -> tuple[int, int]:
    return (d.inputs.shape[-2], d.inputs.shape[-1])


_ROAD = ('Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for Attribution '
         'Methods" (ICML), Sec. 4')
register_metric(Metric(
    "road_morf", "faithfulness", False, _ROAD,
    lambda d: road(d.model, d.inputs, d.maps, d.targets, order="morf", steps=min(d.steps, 50),
                   fast=d.fast, seed=d.seed),
    summary="share of removal levels (most relevant pixels first, noisy linear imputation) at "
            "which the target stays top-1; assumes the target is the model's prediction"))
register_metric(Metric(
    "road_lerf", "faithfulness", True, _ROAD,
    lambda d: road(d.model, d.inputs, d.maps, d.targets, order="lerf", steps=min(d.steps, 50),
                   fast=d.fast, seed=d.seed),
    summary="the same, least relevant pixels first"))
_GRADCAMPP = 'Chattopadhay et al. 2018, "Grad-CAM++", Sec. 6.1 (as torchcam computes it)'
register_metric(Metric(
    "average_drop", "faithfulness", False, _GRADCAMPP,
    lambda d: _confidence_change(d)[0],
    summary="relative drop of the target's probability when the min-max scaled map masks the "
            "input; assumes the map's high values alone carry the evidence"))
register_metric(Metric(
    "increase_confidence", "faithfulness", True, _GRADCAMPP,
    lambda d: _confidence_change(d)[1],
    summary="1 when the map-masked input raises the target's probability"))
register_metric(Metric(
    "infidelity", "faithfulness", False,
    'Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations", Sec. 2 (Captum\'s '
    'definition, normalized)',
    lambda d: confidence.infidelity(d.model, d.inputs, d.maps, d.targets, fast=d.fast, seed=d.seed),
    summary="squared error of the best-scaled map in predicting the logit's change under "
            "Gaussian noise (sigma 0.1 in model-input units, 10 draws)"))
_SENS = 'Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations", Sec. 3'
register_metric(Metric(
    "max_sensitivity", "robustness", False, _SENS,
    lambda d: robustness.max_sensitivity(d.model, d.inputs, d.maps, d.targets, _needs_explain(d),
                                         seed=d.seed),
    frozenset({"explain"}),
    summary="largest relative change of the map over 10 copies with U(-0.2, 0.2) input noise; "
            "assumes a deterministic method"))
register_metric(Metric(
    "avg_sensitivity", "robustness", False, _SENS,
    lambda d: robustness.avg_sensitivity(d.model, d.inputs, d.maps, d.targets, _needs_explain(d),
                                         seed=d.seed),
    frozenset({"explain"}),
    summary="mean relative change of the map over the same noisy copies"))
_CLEVR = ('Arras, Osman & Samek 2022, "CLEVR-XAI: A benchmark dataset for the ground truth '
          'evaluation of neural network explanations", Sec. 4.2')
register_metric(Metric(
    "relevance_mass", "localization", True, _CLEVR,
    lambda d: regions.relevance_mass(d.maps, d.region()), frozenset({"region"}),
    summary="share of the positive relevance inside the mask or box (relevance mass accuracy)"))
register_metric(Metric(
    "energy", "localization", True, 'Wang et al. 2020, "Score-CAM", Sec. 5.2',
    lambda d: regions.relevance_mass(d.maps, d.region()), frozenset({"region"}),
    summary="energy-based pointing game: another name of relevance_mass (the same formula, "
            "on boxes)", alias_of="relevance_mass"))
register_metric(Metric(
    "relevance_rank", "localization", True, _CLEVR,
    lambda d: regions.relevance_rank(d.maps, d.region(), seed=d.seed), frozenset({"region"}),
    summary="share of the K top-ranked pixels inside the mask, K its size (relevance rank accuracy)"))
register_metric(Metric(
    "sparseness", "complexity", True,
    'Chalasani et al. 2020, "Concise Explanations of Neural Networks using Adversarial '
    'Training" (ICML), Sec. 4',
    lambda d: complexity.sparseness(d.maps, _size(d)),
    summary="Gini index of the map's magnitudes: 0 constant, 1 one-hot"))
register_metric(Metric(
    "complexity", "complexity", False,
    'Bhatt, Weller & Moura 2020, "Evaluating and Aggregating Feature-based Model '
    'Explanations" (IJCAI), Sec. 3.2',
    lambda d: complexity.complexity(d.maps, _size(d)),
    summary="entropy of the map's fractional magnitudes: 0 one-hot, log N constant"))
register_metric(Metric(
    "smooth_mprt", "randomization", False,
    'Hedström et al. 2023, "Sanity Checks Revisited: An Exploration to Repair the Model '
    'Parameter Randomisation Test", Sec. 4',
    lambda d: randomization.smooth_mprt(d.model, d.inputs, d.targets, _needs_explain(d), seed=d.seed),
    frozenset({"explain"}),
    summary="mean rank correlation of noise-averaged maps over 5 steps of cascading "
            "randomization of a copy, from the logits down; the map should follow the model"))
register_metric(Metric(
    "efficient_mprt", "randomization", True,
    'Hedström et al. 2024, "A Fresh Look at Sanity Checks for Saliency Maps", Sec. 3',
    lambda d: randomization.efficient_mprt(d.model, d.inputs, d.maps, d.targets, _needs_explain(d),
                                           seed=d.seed),
    frozenset({"explain"}),
    summary="relative rise of the map's histogram entropy on a fully randomized copy"))
register_metric(Metric(
    "random_logit", "randomization", False,
    'Sixt, Granz & Landgraf 2020, "When Explanations Lie: Why Many Modified BP Attributions '
    'Fail" (ICML), Sec. 5',
    lambda d: randomization.random_logit(d.model, d.inputs, d.maps, d.targets, _needs_explain(d),
                                         seed=d.seed),
    frozenset({"explain"}),
    summary="SSIM of the map with the map of a random other class; the map should depend on it"))
