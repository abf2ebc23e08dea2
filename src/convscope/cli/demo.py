"""``convscope demo``: the README's main job on the embedded default model.

Predicts every sample photo and writes a captioned grid of them with their top classes, so a
new user sees the whole path (model, images, rendering) work in one command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..api import as_images, predict
from ..data import list_samples
from ..render import image_grid, save_png
from .common import add_model_options, model_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="predict the sample photos and render them (the main demo)")
    p.add_argument("--out", default="convscope-demo", help="output folder (default convscope-demo)")
    p.add_argument("--top", type=int, default=3, help="classes shown per image (default 3)")
    add_model_options(p)
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    out = Path(args.out)
    names = list(list_samples())
    sources = [f"sample:{n}" for n in names]
    images = as_images(sources)
    results = predict(model, images, top=args.top)
    captions = [
        f"{name}: " + "; ".join(f"{p.label} {p.probability:.0%}" for p in preds)
        for name, preds in zip(names, results)
    ]
    grid = image_grid(list(model.resize(images)), captions=captions, ncols=3,
                      title=f"{model.name}: top-{args.top} predictions")
    path = save_png(grid, out / "predictions.png")
    print_json({"predictions": str(path),
                "images": {n: [p.as_dict() for p in preds] for n, preds in zip(names, results)}})
    return 0
