"""``convscope report``: every method side by side for each image, in one HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..methods.registry import method_list
from ..model.targets import parse_target
from ..tasks.report import report
from .common import add_model_options, model_from_args
from .options import add_layer, add_target
from .progress import progress_bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="HTML page: every method side by side for each image")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or sample:NAME")
    p.add_argument("--methods", default="all", help="comma-separated method names (default all)")
    add_target(p)
    add_layer(p)
    p.add_argument("--out", required=True, help="output folder (report.html is written there)")
    p.add_argument("--faithfulness-steps", type=int, default=20, metavar="N",
                   help="deletion/insertion steps per map (default 20; 0 leaves them out)")
    add_model_options(p)
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    methods = method_list(args.methods)  # a typo fails before any work
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with progress_bar(len(args.images) * len(methods), "report") as progress:
        result = report(model, args.images, methods, target=parse_target(args.target),
                        layer=args.layer, faithfulness_steps=max(0, args.faithfulness_steps),
                        progress=progress)
    path = out / "report.html"
    path.write_text(result.html(), encoding="utf-8")
    print(f"wrote {path}")
    return 0
