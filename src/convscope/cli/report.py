"""``convscope report``: every method side by side for each image, in one HTML page."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..errors import ConvscopeError
from ..methods.registry import get_method, method_names
from ..model import FastForward, Model
from ..render import Card, Section, html_report, to_pil
from ..tasks.explain import explain
from ..tasks.inputs import as_images
from ..tasks.predict import predict
from ..types import ProgressFn
from .common import add_model_options, model_from_args
from .evaluate import faithfulness_scores
from .options import parse_target
from .progress import progress_bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="HTML page: every method side by side for each image")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or sample:NAME")
    p.add_argument("--methods", default="all", help="comma-separated method names (default all)")
    p.add_argument("--target", default="top1", help="class index, label or top1 (default)")
    p.add_argument("--layer", default="auto", help="layer for CAM-family methods (default auto)")
    p.add_argument("--out", required=True, help="output folder (report.html is written there)")
    p.add_argument("--faithfulness-steps", type=int, default=20, metavar="N",
                   help="deletion/insertion steps per map (default 20; 0 leaves them out)")
    add_model_options(p)
    p.set_defaults(func=run_report)


def build_report(model: Model, images: list[str], methods: list[str], target: str,
                 layer: str, progress: ProgressFn | None = None, faithfulness_steps: int = 20) -> str:
    """The report page as HTML; a method that cannot run on an input shows its error.

    Each card lists the map's deletion and insertion AUC (``faithfulness_steps`` steps, 0 for
    none): lower deletion and higher insertion mean a more faithful map.
    """
    sections = []
    fast = FastForward(model) if faithfulness_steps > 0 else None
    tensors = as_images(images)
    predictions = predict(model, tensors, top=5)
    total, done = len(images) * len(methods), 0
    wanted = parse_target(target)
    for name, image, preds in zip(images, tensors, predictions):
        index = preds[0].index if wanted == "top1" else (
            wanted if isinstance(wanted, int) else model.class_index(str(wanted)))
        cards = []
        for method in methods:
            try:
                result = explain(model, image, method=method, target=index, layer=layer)
                lines = [f"{get_method(method).family} · {result.seconds:.2f} s"]
                if result.layer:
                    lines.append(f"layer {result.layer}")
                if fast is not None:
                    auc = faithfulness_scores(model, model.preprocess([image]), result.values,
                                              torch.tensor([index]), faithfulness_steps, fast)
                    lines.append(f"deletion AUC {auc['deletion_auc'][0]:.3f} ↓ · "
                                 f"insertion AUC {auc['insertion_auc'][0]:.3f} ↑")
                cards.append(Card(method, result.overlay(0), lines))
            except ConvscopeError as err:
                cards.append(Card(method, None, [get_method(method).family], error=str(err)))
            done += 1
            if progress:
                progress(done, total)
        shown = to_pil(model.resize([image])[0])
        rows = [[str(p.rank), p.label, str(p.index), f"{p.probability:.1%}"] for p in preds]
        title = f"{name} — explaining {model.label(index)} (class {index})"
        sections.append(Section(title, shown,
                                ["#", "class", "index", "probability"], rows, cards))
    meta = (f"model {model.name} · torch {torch.__version__} · {model.device} · "
            f"{time.strftime('%Y-%m-%d %H:%M')}")
    return html_report("convscope report", sections, meta)


def run_report(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    methods = method_names() if args.methods == "all" else [
        m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        get_method(m)  # fail before any work on a typo
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with progress_bar(len(args.images) * len(methods), "report") as progress:
        page = build_report(model, args.images, methods, args.target, args.layer, progress,
                            faithfulness_steps=max(0, args.faithfulness_steps))
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    print(f"wrote {path}")
    return 0
