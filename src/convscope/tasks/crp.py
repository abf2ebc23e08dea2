"""``crp()``: which channels of a layer carried a decision, each with its conditional heatmap.

The task behind ``convscope.crp`` and ``convscope crp``: it reads the images, runs
:class:`~convscope.methods.concepts.CRP` (Achtibat et al. 2023) and returns a
:class:`ConceptRelevance` that ranks the layer's channels by their relevance for the target and
draws each condition's heatmap over its image (PNG), with a JSON summary and an HTML page.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from ..errors import BadArgument
from ..methods.attribution.lrp import CompositeName, LayerRule, RuleName
from ..methods.concepts import CRP
from ..methods.concepts.crp import Conditions
from ..model import Model, target_indices
from ..render import overlay, save_png
from ..render.notebook import figure_html
from ..render.report import Card, Section, html_report
from ..types import Target
from .explain import _method
from .inputs import Images, model_inputs

SIGNED: dict[str, Any] = {"mode": "signed", "reduce": "sum"}
"""Relevance is signed: for the class (red) or against it (blue)."""


def _condition_name(group: tuple[int, ...]) -> str:
    return "channel " + "+".join(str(c) for c in group) if len(group) == 1 else \
        "channels " + "+".join(str(c) for c in group)


@dataclass
class ConceptRelevance:
    """CRP of a batch: every channel's relevance and the heatmap of each condition."""

    model: str
    layer: str
    layer_reason: str | None
    composite: str
    images: Tensor
    """(B, 3, H, W) in [0, 1]: the images as the model saw them."""
    targets: Tensor
    """(B,) the class explained per image."""
    target_labels: list[str]
    scores: Tensor
    """(B,) the target logit: the relevance LRP distributes."""
    relevance: Tensor
    """(B, C) each channel's relevance for the target (the layer's relevance summed per channel)."""
    conditions: list[list[tuple[int, ...]]]
    """Per image, the channels of each condition (most relevant first for ``top=``)."""
    heatmaps: Tensor
    """(B, K, C_in, H, W) the input relevance through each condition's channels."""
    seconds: float
    options: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.relevance.shape[0]

    def shares(self) -> Tensor:
        """(B, C) each channel's relevance as a fraction of the layer's total |relevance|."""
        return self.relevance / self.relevance.abs().sum(1, keepdim=True).clamp_min(1e-30)

    def ranked(self, index: int = 0, top: int | None = None) -> list[tuple[int, float]]:
        """Image ``index``'s channels by relevance, most relevant first: (channel, relevance)."""
        order = self.relevance[index].argsort(descending=True)[:top]
        return [(int(c), float(self.relevance[index, c])) for c in order]

    def condition_relevance(self, index: int, k: int) -> float:
        """The relevance of condition ``k`` of image ``index``: its channels' sum."""
        return float(self.relevance[index, list(self.conditions[index][k])].sum())

    def overlay(self, index: int = 0, k: int = 0, **options: Any) -> Image.Image:
        """Condition ``k``'s heatmap over image ``index`` (options as :func:`convscope.render.overlay`)."""
        if not 0 <= index < len(self) or not 0 <= k < len(self.conditions[index]):
            raise BadArgument(f"no condition {k} of image {index}: {len(self)} images with "
                              f"{len(self.conditions[0])} conditions each")
        return overlay(self.images[index], self.heatmaps[index, k], **{**SIGNED, **options})

    def picture(self, index: int = 0) -> Image.Image:
        """Image ``index`` and each condition's heatmap side by side, captioned with its share."""
        from ..render.grid import image_grid

        shares = self.shares()[index]
        tiles: list[Tensor | Image.Image] = [self.images[index]]
        tiles += [self.overlay(index, k) for k in range(len(self.conditions[index]))]
        captions = [f"{self.target_labels[index]} ({float(self.scores[index]):.3g})"]
        captions += [f"{_condition_name(g)}: {100 * float(shares[list(g)].sum()):.0f}%"
                     for g in self.conditions[index]]
        return image_grid(tiles, captions=captions, tile_size=160, upscale="auto",
                          title=f"CRP at {self.layer} ({self.composite})")

    def summary(self) -> dict[str, Any]:
        """The numbers as JSON-ready data (what ``--json`` prints and ``crp.json`` holds)."""
        shares = self.shares()
        return {"model": self.model, "layer": self.layer, "layer_reason": self.layer_reason,
                "composite": self.composite, "seconds": round(self.seconds, 4), "images": [
                    {"target": int(self.targets[i]), "label": self.target_labels[i],
                     "score": float(self.scores[i]),
                     "layer_relevance": float(self.relevance[i].sum()),
                     "conditions": [{"channels": list(g), "relevance": self.condition_relevance(i, k),
                                     "share": float(shares[i, list(g)].sum()),
                                     "heatmap_sum": float(self.heatmaps[i, k].sum())}
                                    for k, g in enumerate(self.conditions[i])],
                     "channels": [{"channel": c, "relevance": r, "share": float(shares[i, c])}
                                  for c, r in self.ranked(i)]}
                    for i in range(len(self))]}

    def html(self) -> str:
        """A self-contained page: per image, its channels by relevance and the condition heatmaps."""
        sections = []
        shares = self.shares()
        for i in range(len(self)):
            rows = [[str(c), f"{r:.4g}", f"{100 * float(shares[i, c]):.1f}%"] for c, r in self.ranked(i, 10)]
            cards = [Card(_condition_name(g), self.overlay(i, k),
                          [f"relevance {self.condition_relevance(i, k):.4g}",
                           f"{100 * float(shares[i, list(g)].sum()):.1f}% of the layer's"])
                     for k, g in enumerate(self.conditions[i])]
            image = overlay(self.images[i], self.heatmaps[i].sum(0), **SIGNED)
            sections.append(Section(f"image {i}: {self.target_labels[i]} (logit {float(self.scores[i]):.3g})",
                                    image, ["channel", "relevance", "share"], rows, cards))
        notes = ["Concept relevance propagation (Achtibat et al. 2023): the LRP relevance of the target "
                 f"that flows through the chosen channels of layer {self.layer}. The picture beside each "
                 "table is the relevance through all of the conditions together; the table ranks the "
                 "layer's channels by their relevance for the decision (share: of the layer's total "
                 "|relevance|)."]
        return html_report(f"CRP: {self.model}, layer {self.layer}", sections,
                           meta=f"composite {self.composite}, {self.seconds:.2f} s", notes=notes)

    def save(self, out: str | Path) -> list[Path]:
        """Write ``crp_<i>.png`` per image, ``crp.json`` and ``crp.html`` into folder ``out``."""
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        written = [save_png(self.picture(i), folder / f"crp_{i}.png") for i in range(len(self))]
        (folder / "crp.json").write_text(json.dumps(self.summary(), indent=2), encoding="utf-8")
        (folder / "crp.html").write_text(self.html(), encoding="utf-8")
        return [*written, folder / "crp.json", folder / "crp.html"]

    def _repr_html_(self) -> str:
        return "".join(figure_html(self.picture(i), f"image {i}") for i in range(min(len(self), 4)))


def crp(
    model: Model,
    images: Images,
    target: Target = "top1",
    layer: str = "auto",
    *,
    channels: Conditions | None = None,
    top: int | None = None,
    composite: CompositeName = "epsilon_gamma_box",
    rules: Mapping[str, LayerRule | RuleName] | None = None,
    batch_size: int = 64,
    **numbers: float,
) -> ConceptRelevance:
    """Concept relevance propagation: the relevance of ``target`` through chosen channels of ``layer``.

    ``channels``: conditions shared by every image (a channel, or a list of channels for one
    concept made of several); ``top``: each image's ``top`` most relevant channels instead (the
    default, 6, when neither is given). ``composite``, ``rules`` and the numbers (``epsilon``,
    ``gamma``, ...) choose the LRP rules, as for ``explain(method="lrp")``.
    """
    if channels is None and top is None:
        top = 6
    options = {"batch_size": batch_size, "composite": composite, "rules": rules, **numbers}
    method = _method(model, "crp", layer, options, lambda: CRP(model, layer=layer, **options))  # type: ignore[arg-type]
    x = model_inputs(model, images)
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise BadArgument("crp explains image batches; give images, paths or a (B, C, H, W) tensor")
    start = time.perf_counter()
    maps = method.conditional(x, target, channels=channels, top=top)
    seconds = time.perf_counter() - start
    assert method.logits is not None and method.layer is not None
    idx = target_indices(method.logits, target, model.labels)
    targets = idx.cpu() if idx is not None else torch.full((len(x),), -1)
    return ConceptRelevance(
        model=model.name, layer=method.layer, layer_reason=method.layer_reason, composite=composite,
        images=model.denormalize(x).clamp(0, 1).detach().cpu(), targets=targets,
        target_labels=[model.label(int(i)) if i >= 0 else "target" for i in targets],
        scores=maps.scores.cpu(), relevance=maps.relevance.cpu(), conditions=maps.conditions,
        heatmaps=maps.heatmaps.detach().cpu(), seconds=seconds,
        options={"channels": channels, "top": top, **numbers})
