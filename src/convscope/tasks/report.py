"""``report``: every method side by side for each image, with predictions and faithfulness.

The result holds the maps and numbers; :meth:`Report.html` draws the page with
:func:`convscope.render.html_report` (the CLI writes it to ``report.html``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ConvscopeError
from ..methods.registry import get_method, method_list
from ..model import FastForward, Model
from ..render import Card, Section, html_report, to_pil
from ..render.notebook import page_iframe
from ..render.report import FAITHFULNESS_NOTE, SHOWN_MAX
from ..types import ProgressFn, Target
from .evaluate import faithfulness_scores
from .explain import Explanation, explain
from .inputs import Images, ImageSource, as_images
from .predict import Prediction, predict


@dataclass
class MethodResult:
    """One method on one image: its explanation and scores, or the error that stopped it."""

    method: str
    family: str
    explanation: Explanation | None = None
    deletion_auc: float | None = None
    insertion_auc: float | None = None
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        if self.explanation is None:
            return {"method": self.method, "family": self.family, "error": self.error}
        return {"method": self.method, "family": self.family, "layer": self.explanation.layer,
                "seconds": round(self.explanation.seconds, 4), "deletion_auc": self.deletion_auc,
                "insertion_auc": self.insertion_auc}


@dataclass
class ImageReport:
    """One image: the photo (uncropped), its top classes, the class explained, every method."""

    name: str
    image: Tensor
    """(3, H, W) in [0, 1] at the model's input size."""
    predictions: list[Prediction]
    target: int
    target_label: str
    methods: list[MethodResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"image": self.name, "target": self.target, "target_label": self.target_label,
                "predictions": [p.as_dict() for p in self.predictions],
                "methods": [m.summary() for m in self.methods]}


@dataclass
class Report:
    model: str
    device: str
    created: str
    images: list[ImageReport]

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "device": self.device, "created": self.created,
                "images": [i.summary() for i in self.images]}

    def html(self) -> str:
        """The page: one section per image, one card per method (errors shown in the card)."""
        sections = []
        for item in self.images:
            cards = []
            for m in item.methods:
                if m.explanation is None:
                    cards.append(Card(m.method, None, [m.family], error=m.error))
                    continue
                lines = [f"{m.family} · {m.explanation.seconds:.2f} s"]
                if m.explanation.layer:
                    lines.append(f"layer {m.explanation.layer}")
                if m.deletion_auc is not None:
                    lines.append(f"deletion AUC {m.deletion_auc:.3f} ↓ · "
                                 f"insertion AUC {m.insertion_auc:.3f} ↑")
                cards.append(Card(m.method, m.explanation.overlay(0, max_side=SHOWN_MAX), lines))
            rows = [[str(p.rank), p.label, str(p.index), f"{p.probability:.1%}"]
                    for p in item.predictions]
            title = f"{item.name} — explaining {item.target_label} (class {item.target})"
            sections.append(Section(title, to_pil(item.image), ["#", "class", "index", "probability"],
                                    rows, cards))
        meta = f"model {self.model} · torch {torch.__version__} · {self.device} · {self.created}"
        scored = any(m.deletion_auc is not None for item in self.images for m in item.methods)
        return html_report("convscope report", sections, meta,
                           notes=[FAITHFULNESS_NOTE] if scored else None)

    def _repr_html_(self) -> str:
        """The page in a frame of its own, so its stylesheet leaves the notebook alone."""
        return page_iframe(self.html(), height=720)


def _name(source: ImageSource, i: int) -> str:
    return str(source) if isinstance(source, (str, Path)) else f"image {i}"


def report(
    model: Model,
    images: Images,
    methods: str | Sequence[str] = "all",
    *,
    target: Target = "top1",
    layer: str = "auto",
    faithfulness_steps: int = 20,
    progress: ProgressFn | None = None,
) -> Report:
    """Explain each image with each method (``"all"``, ``"a,b"`` or a list); a method that cannot
    run on an input keeps its error. Each map gets its deletion and insertion AUC
    (``faithfulness_steps`` steps, 0 for none): lower deletion, higher insertion is more faithful.

    ``target`` is one class (index or label) for every image, or ``"top1"``: each image's own.
    ``layer`` is for the methods that take one (the CAM family); the others ignore it.
    """
    names = method_list(methods)
    sources: list[ImageSource] = (list(images) if isinstance(images, Sequence)
                                  and not isinstance(images, (str, bytes)) else [images])
    tensors = as_images(images)
    if len(sources) != len(tensors):  # one (B, C, H, W) tensor of several images
        sources = [f"image {i}" for i in range(len(tensors))]
    fast = FastForward(model) if faithfulness_steps > 0 else None
    predictions = predict(model, tensors, top=5)
    total, done = len(tensors) * len(names), 0
    out = []
    for i, (source, image, preds) in enumerate(zip(sources, tensors, predictions)):
        index = preds[0].index if target == "top1" else (
            int(target) if isinstance(target, int) else model.class_index(str(target)))
        x = model.preprocess([image])
        item = ImageReport(_name(source, i), image, preds, index, model.label(index))
        for method in names:
            info = get_method(method)
            family = info.family
            try:
                result = explain(model, x, method=method, target=index,
                                 layer=layer if info.needs_layer else "auto")
                result.framings = model.framings([image])  # draw on the photo, not the crop
                done_item = MethodResult(method, family, result)
                if fast is not None:
                    scores = faithfulness_scores(model, x, result.maps, torch.tensor([index]),
                                                 faithfulness_steps, fast)
                    done_item.deletion_auc = scores["deletion_auc"][0]
                    done_item.insertion_auc = scores["insertion_auc"][0]
                item.methods.append(done_item)
            except ConvscopeError as err:
                item.methods.append(MethodResult(method, family, error=str(err)))
            done += 1
            if progress is not None:
                progress(done, total)
        out.append(item)
    return Report(model.name, str(model.device), time.strftime("%Y-%m-%d %H:%M"), out)
