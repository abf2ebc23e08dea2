"""``convscope dissect``: which concept each unit of a layer detects (network dissection).

    convscope dissect digits_planted --model digits_planted --layer block4 --out dissect-out

DATASET is ``digits_planted``, ``digit_scenes`` or a folder with ``images/`` and
``masks/<concept>/`` (mask PNGs named like their images). Writes ``dissect.png`` (the top
units' IoU with their concept), ``dissect.json`` (every unit) and ``dissect.html``.
"""

from __future__ import annotations

import argparse

from ..tasks.concepts_dissect import dissect
from .common import add_model_options, model_from_args, print_json
from .output import aligned


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dissect", help="network dissection: label units with concepts by mask IoU")
    p.add_argument("dataset", metavar="DATASET",
                   help="digits_planted, digit_scenes, or a folder with images/ and masks/<concept>/")
    p.add_argument("--layer", default="auto", help="a layer with spatial maps (default auto)")
    p.add_argument("--quantile", type=float, default=0.995,
                   help="a unit's mask: its activations above this quantile (default 0.995)")
    p.add_argument("--limit", type=int, help="use the first N images only")
    p.add_argument("--top", type=int, default=20, help="units to print and draw (default 20)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default="dissect-out", help="folder for dissect.png, .json, .html")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    add_model_options(p)
    p.set_defaults(func=run_dissect)


def run_dissect(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    report = dissect(model, args.dataset, args.layer, quantile=args.quantile, limit=args.limit,
                     batch_size=args.batch_size)
    paths = report.save(args.out, args.top)
    if args.json:
        print_json(report.as_dict())
        return 0
    print("\n".join(aligned(report.table(args.top))))
    print(f"wrote {paths['png']}, {paths['json']}, {paths['html']}")
    return 0
