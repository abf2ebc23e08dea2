"""``convscope demo``: the README's main job on the embedded default model.

Predicts every sample photo into a captioned grid, then writes the side-by-side report of every
attribution method for the two photos with a known ImageNet class (cat, coffee), so a new user
sees the whole path -- model, images, methods, rendering -- work in one command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import list_samples
from ..methods.registry import method_names
from ..render import image_grid, save_png
from ..tasks.inputs import as_images
from ..tasks.predict import predict
from ..tasks.report import report
from .common import add_model_options, model_from_args
from .progress import progress_bar

REPORT_IMAGES = ["sample:cat", "sample:coffee"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="predict the sample photos and report every method (main demo)")
    p.add_argument("--out", default="convscope-demo", help="output folder (default convscope-demo)")
    p.add_argument("--top", type=int, default=3, help="classes shown per image (default 3)")
    add_model_options(p)
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    out = Path(args.out)
    names = list(list_samples())
    images = as_images([f"sample:{n}" for n in names])
    results = predict(model, images, top=args.top)
    captions = [
        f"{name}: " + "; ".join(f"{p.label} {p.probability:.0%}" for p in preds)
        for name, preds in zip(names, results)
    ]
    grid = image_grid(list(model.resize(images)), captions=captions, ncols=3,
                      title=f"{model.name}: top-{args.top} predictions")
    grid_path = save_png(grid, out / "predictions.png")
    width = max(map(len, names))
    for name, preds in zip(names, results):
        print(f"{name:<{width}}  {preds[0].label} ({preds[0].probability:.0%})")
    methods = method_names()
    with progress_bar(len(REPORT_IMAGES) * len(methods), "report") as progress:
        page = report(model, REPORT_IMAGES, methods, progress=progress).html()
    report_path = out / "report.html"
    report_path.write_text(page, encoding="utf-8")
    print(f"wrote {grid_path} and {report_path} ({len(methods)} methods)")
    return 0
