"""The leaderboard's result: per method and metric a mean, its 95% interval and a rank, the time
per method, and which methods this many images cannot tell apart.

Intervals and the tie test are :mod:`convscope.methods.evaluation.bootstrap` (percentile
bootstrap over images; two methods are indistinguishable on a metric when the paired interval
of their mean difference holds 0). The rank follows the metric's direction from the registry:
1 + the number of methods with a strictly better mean.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..methods.evaluation.bootstrap import Interval, interval, paired_difference, resample_indices
from ..methods.evaluation.metrics import get_metric
from ..render.leaderboard import Panel, interval_plot, leaderboard_fragment, leaderboard_page

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Cell:
    """One method on one metric."""

    method: str
    metric: str
    score: Interval
    rank: int | None
    """None when the metric was undefined on every image."""
    ties: tuple[str, ...]
    """The methods indistinguishable from this one on this metric."""


@dataclass
class Leaderboard:
    """Methods x metrics over a dataset; ``rows()`` for a DataFrame, ``save()`` for files."""

    model: str
    dataset: str
    target: str
    methods: list[str]
    metrics: list[str]
    images: int
    cells: list[Cell]
    seconds: dict[str, float]
    """Seconds each method spent explaining, summed over every image (metrics not included)."""
    errors: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    resumed: int = 0
    """Images an earlier, interrupted run had committed."""
    resamples: int = 2000
    seed: int = 0

    def cell(self, method: str, metric: str) -> Cell:
        return next(c for c in self.cells if c.method == method and c.metric == metric)

    @property
    def rule(self) -> str:
        return (f"Intervals: {CONFIDENCE:.0%} percentile bootstrap over the {self.images} images "
                f"({self.resamples} resamples, seed {self.seed}). Two methods are indistinguishable "
                "on a metric when the paired bootstrap interval of their mean difference, over the "
                "same images, holds 0.")

    def rows(self) -> list[dict[str, Any]]:
        """One dict per method and metric (long form: ``pandas.DataFrame(board.rows())``)."""
        out = []
        for c in self.cells:
            metric = get_metric(c.metric)
            out.append({"method": c.method, "metric": c.metric, "group": metric.group,
                        "higher_is_better": metric.higher_is_better, "mean": c.score.mean,
                        "ci_low": c.score.low, "ci_high": c.score.high, "n": c.score.n,
                        "rank": c.rank, "indistinguishable_from": ";".join(c.ties),
                        "seconds_per_image": self.seconds.get(c.method, 0.0) / max(self.images, 1)})
        return out

    def statements(self) -> list[str]:
        """Per metric, in words: who is best, and who cannot be told apart at this sample size."""
        said = []
        for metric in self.metrics:
            cells = sorted((c for c in self.cells if c.metric == metric and c.rank is not None),
                           key=lambda c: c.rank or 0)
            head = f"{metric} ({get_metric(metric).direction})"
            if not cells:
                said.append(f"{head}: undefined on every image.")
                continue
            best = cells[0]
            text = f"{head}: {best.method} is best ({best.score.mean:.4g})"
            if len(cells) == 1:
                said.append(text + ".")
                continue
            if all(len(c.ties) == len(cells) - 1 for c in cells):
                said.append(f"{head}: no two methods can be told apart at {self.images} images "
                            f"(best mean: {best.method}, {best.score.mean:.4g}).")
                continue
            if best.ties:
                text += (f", indistinguishable at {self.images} images from {_words(best.ties)}")
            else:
                text += ", better than every other method beyond chance"
            others = sorted({tuple(sorted((c.method, t))) for c in cells[1:] for t in c.ties
                             if best.method not in (c.method, t)})
            if others:
                text += "; also indistinguishable: " + ", ".join(f"{a} ~ {b}" for a, b in others)
            said.append(text + ".")
        said += [f"{m}: failed ({e})" for m, e in self.errors.items()]
        return said

    def table(self) -> tuple[list[str], list[list[str]]]:
        """The wide table: one row per method, ``mean [low, high] #rank`` per metric."""
        arrows = {m: "↑" if get_metric(m).higher_is_better else "↓" for m in self.metrics}
        header = ["method", "s/image", *(f"{m} {arrows[m]}" for m in self.metrics)]
        rows = []
        for method in self.methods:
            cells = [self.cell(method, metric) for metric in self.metrics]
            rows.append([method, f"{self.seconds.get(method, 0.0) / max(self.images, 1):.4f}",
                         *(_shown(c) for c in cells)])
        return header, rows

    def plot(self) -> Image.Image:
        """Means with 95% error bars, one panel per metric, best first."""
        panels = []
        for metric in self.metrics:
            cells = sorted((c for c in self.cells if c.metric == metric),
                           key=lambda c: (c.rank is None, c.rank or 0))
            best = cells[0] if cells and cells[0].rank is not None else None
            top = [best is not None and (c is best or c.method in best.ties) for c in cells]
            panels.append(Panel(f"{metric} ({get_metric(metric).direction})", [c.method for c in cells],
                                [c.score.mean for c in cells], [c.score.low for c in cells],
                                [c.score.high for c in cells], top))
        return interval_plot(panels, f"{self.model} on {self.dataset}: {self.images} images, "
                                     "means with 95% intervals (blue: best and its ties)")

    def html(self) -> str:
        header, rows = self.table()
        return leaderboard_page(f"Leaderboard: {self.model} on {self.dataset}", self.meta, header, rows,
                                [*self.statements(), self.rule], self.plot())

    @property
    def meta(self) -> str:
        resumed = f", {self.resumed} resumed from a checkpoint" if self.resumed else ""
        skipped = f", {len(self.skipped)} unreadable skipped" if self.skipped else ""
        return f"{self.images} images, target {self.target}{resumed}{skipped}"

    def _repr_html_(self) -> str:
        header, rows = self.table()
        return leaderboard_fragment(header, rows, [*self.statements(), self.rule], self.plot())

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the settings, the rows, the statements and the rule."""
        return {"model": self.model, "dataset": self.dataset, "target": self.target,
                "images": self.images, "methods": self.methods, "metrics": self.metrics,
                "seconds": {m: round(s, 4) for m, s in self.seconds.items()},
                "rows": [{k: _json_number(v) for k, v in r.items()} for r in self.rows()],
                "statements": self.statements(), "rule": self.rule, "errors": self.errors,
                "skipped": [list(s) for s in self.skipped], "resumed": self.resumed}

    def csv(self) -> str:
        rows = self.rows()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["method"])
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    def save(self, folder: str | Path) -> dict[str, Path]:
        """``leaderboard.json``, ``.csv``, ``.html`` and the plot ``.png`` in ``folder``."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        paths = {kind: root / f"leaderboard.{kind}" for kind in ("json", "csv", "html", "png")}
        paths["json"].write_text(json.dumps(self.summary(), indent=2), encoding="utf-8")
        paths["csv"].write_text(self.csv(), encoding="utf-8")
        paths["html"].write_text(self.html(), encoding="utf-8")
        self.plot().save(paths["png"])
        return paths


def make_leaderboard(model: str, dataset: str, target: str, methods: list[str], metrics: list[str],
                     state: dict[str, Any], *, resamples: int, seed: int) -> Leaderboard:
    """The table from the merged per-image scores of a run (``tasks.leaderboard``'s state)."""
    ranked = [m for m in methods if m not in state["errors"] and m in state["scores"]]
    count = len(state["indices"])
    draws = resample_indices(count, resamples, seed)
    cells: list[Cell] = []
    for metric in metrics:
        values = {m: np.asarray(state["scores"][m][metric], dtype=float) for m in ranked}
        scores = {m: interval(v, draws, CONFIDENCE) for m, v in values.items()}
        sign = 1.0 if get_metric(metric).higher_is_better else -1.0
        for m in ranked:
            mean = scores[m].mean
            rank = None if math.isnan(mean) else 1 + sum(
                sign * scores[o].mean > sign * mean for o in ranked if not math.isnan(scores[o].mean))
            ties = tuple(o for o in ranked if o != m and not math.isnan(mean)
                         and paired_difference(values[m], values[o], draws, CONFIDENCE).holds(0.0))
            cells.append(Cell(m, metric, scores[m], rank, ties))
    return Leaderboard(model, dataset, target, ranked, metrics, count, cells,
                       {m: float(state["seconds"].get(m, 0.0)) for m in ranked}, dict(state["errors"]),
                       [(int(i), str(r)) for i, r in state["skipped"]], int(state.get("resumed", 0)),
                       resamples, seed)


def _shown(c: Cell) -> str:
    if c.rank is None:
        return "n/a"
    return f"{c.score.mean:.3f} [{c.score.low:.3f}, {c.score.high:.3f}] #{c.rank}"


def _words(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
