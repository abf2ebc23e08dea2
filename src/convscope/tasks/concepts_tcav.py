"""``tcav``: TCAV of concepts given as image folders (or any dataset convscope reads) for a class.

Opens the concept, random and class-input sets, runs :func:`convscope.methods.concepts.tcav.tcav`
on the model's preprocessed inputs and returns a :class:`TCAVReport` with the scores, p-values
and CAV accuracies, the bar chart and what the CLI saves (PNG, JSON, HTML).

Sets: a folder (every image in it and below), ``"mnist5k"``, an :class:`ImageDataset`, a torch
Dataset, a list of images, or a (B, C, H, W) tensor of model inputs taken as it is. Random sets:
a list of such sets, or one folder whose subfolders are the sets (sorted by name; the first is
the reference for random versus random).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from ..data.datasets import ImageDataset, open_dataset
from ..errors import BadArgument, BadImage
from ..methods.concepts.tcav import Progress, TCAVScores
from ..methods.concepts.tcav import tcav as tcav_scores
from ..model import Model, resolve_layer
from ..model.targets import class_index
from ..render.concepts import summary_page, tcav_chart
from .concepts_output import write_outputs

ImageSet = str | os.PathLike | ImageDataset | Tensor | Sequence[Any]


def load_set(model: Model, spec: ImageSet, what: str) -> Tensor:
    """Every image of ``spec`` as model input (module docstring); ``what`` names it in errors."""
    if isinstance(spec, Tensor):
        return spec.to(model.device)
    try:
        data = open_dataset(spec)
    except BadImage as err:
        if isinstance(spec, (str, os.PathLike)) and Path(spec).is_dir():
            raise BadImage(f"{what} folder '{os.fspath(spec)}' holds no images; put example images "
                           "of it there") from err
        raise BadImage(f"{what}: {err}") from err
    loaded = data.load_batch(range(len(data)))
    if loaded.failed:
        _, reason = loaded.failed[0]
        raise BadImage(f"{what}: {reason} ({len(loaded.failed)} unreadable); remove or fix it")
    if len(loaded.indices) == 0:
        raise BadImage(f"{what} holds no images; give at least a few examples")
    return model.preprocess(loaded.images)


def random_sets(model: Model, randoms: ImageSet | Sequence[ImageSet]) -> list[Tensor]:
    """A folder of subfolders, or a list of sets, as a list of model-input tensors."""
    if isinstance(randoms, (str, os.PathLike)):
        root = Path(randoms)
        subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if root.is_dir() else []
        if not subs:
            raise BadImage(f"random folder '{os.fspath(randoms)}' has no subfolders; make one subfolder "
                           "per random set (at least 3, the paper uses 11 or more)")
        return [load_set(model, sub, f"random set '{sub.name}'") for sub in subs]
    if isinstance(randoms, (Tensor, ImageDataset)):
        raise BadArgument("randoms: give a list of random sets or a folder of subfolders, one per set")
    return [load_set(model, r, f"random set {i}") for i, r in enumerate(randoms)]


@dataclass
class TCAVReport:
    """TCAV scores of one call, with what it was asked and how to show it."""

    result: TCAVScores
    model_name: str
    target_name: str

    def chart(self) -> Image.Image:
        r = self.result
        return tcav_chart(r.concepts, r.layers, r.mean.numpy(), r.scores.std(-1).numpy(),
                          r.random_mean.numpy(), r.random_scores.std(-1).numpy(), r.significant.numpy(),
                          title=f"TCAV for class {self.target_name!r} ({self.model_name})")

    def rows(self) -> list[dict[str, Any]]:
        """One row per concept and layer: the numbers the chart and the table show."""
        r = self.result
        return [{"concept": c, "layer": layer, "score": float(r.mean[i, j]),
                 "score_std": float(r.scores[i, j].std()), "random_score": float(r.random_mean[j]),
                 "p_value": float(r.p_values[i, j]), "p_corrected": float(r.corrected[i, j]),
                 "significant": bool(r.significant[i, j]), "positive": bool(r.positive[i, j]),
                 "verdict": "positive" if r.positive[i, j] else "negative" if r.significant[i, j] else "n.s.",
                 "cav_accuracy": float(r.accuracy[i, j].mean()),
                 "random_cav_accuracy": float(r.random_accuracy[j].mean()),
                 "scores": r.scores[i, j].tolist()}
                for i, c in enumerate(r.concepts) for j, layer in enumerate(r.layers)]

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {"model": self.model_name, "target": r.target, "target_name": self.target_name,
                "inputs": r.inputs, "runs": int(r.scores.shape[-1]), "significance": r.significance,
                "tests": int(r.p_values.numel()), "results": self.rows(),
                "random_scores": {layer: r.random_scores[j].tolist() for j, layer in enumerate(r.layers)}}

    def html(self) -> str:
        header = ["concept", "layer", "TCAV score", "random", "p (Bonferroni)", "verdict", "CAV accuracy"]
        rows = [[d["concept"], d["layer"], f"{d['score']:.2f} ± {d['score_std']:.2f}",
                 f"{d['random_score']:.2f}", f"{d['p_corrected']:.2g}", d["verdict"],
                 f"{d['cav_accuracy']:.2f}"] for d in self.rows()]
        r = self.result
        notes = [f"TCAV score: the share of the {r.inputs} inputs of class {self.target_name!r} whose "
                 "logit rises along the concept's CAV (Kim et al. 2018), mean ± std over "
                 f"{r.scores.shape[-1]} CAVs fitted against different random sets.",
                 "p: two-sided t-test of those scores against random-versus-random scores, times the "
                 f"number of tests ({r.p_values.numel()}, Bonferroni); * in the chart: p < {r.significance}."]
        return summary_page(f"TCAV: class {self.target_name}", f"model {self.model_name}", header, rows,
                            notes, self.chart(), alt="TCAV scores per layer with significance marks")

    def save(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write tcav.png, tcav.json and tcav.html under ``folder``; returns the paths."""
        return write_outputs(folder, "tcav", self.chart(), self.as_dict(), self.html())


def tcav(model: Model, concepts: Mapping[str, ImageSet], randoms: ImageSet | Sequence[ImageSet],
         inputs: ImageSet, target: int | str, layers: str | Sequence[str] = "auto", *,
         alpha: float = 0.01, test_fraction: float = 1 / 3, seed: int = 0, significance: float = 0.05,
         batch_size: int = 64, progress: Progress | None = None) -> TCAVReport:
    """TCAV of each concept for class ``target`` at ``layers`` against random sets.

    Args:
        concepts: name -> images of the concept (module docstring for what a set may be).
        randoms: at least 3 random sets (the paper: a reference and 10 runs or more).
        inputs: images of the class whose decisions are tested.
        target: class index or label.
    """
    if not isinstance(concepts, Mapping) or not concepts:
        raise BadArgument("concepts: give a mapping of concept name -> folder or images, e.g. "
                          "{'stripes': 'concepts/stripes'}")
    index = target if isinstance(target, int) else class_index(target, model.labels)
    names = [layers] if isinstance(layers, str) else list(layers)
    resolved = list(dict.fromkeys(resolve_layer(model, n) for n in names))
    concept_inputs = {name: load_set(model, spec, f"concept {name!r}") for name, spec in concepts.items()}
    random_inputs = random_sets(model, randoms)
    class_inputs = load_set(model, inputs, "class inputs")
    with torch.inference_mode(False):
        result = tcav_scores(model, concept_inputs, random_inputs, class_inputs, index, resolved,
                             alpha=alpha, test_fraction=test_fraction, seed=seed,
                             significance=significance, batch_size=batch_size, progress=progress)
    return TCAVReport(result, model.name, model.label(index))
