"""``convscope evaluate``: how faithful attribution maps are, per method, as a table and JSON.

For each method and image: deletion and insertion AUC (Petsiuk et al. 2018; lower deletion and
higher insertion are better), and, when ``--box`` gives the object's box for each image, the
pointing game (15 px tolerance), the energy inside the box and the IoU of the CAM box. With
``--sanity`` the cascading randomization test (Adebayo et al. 2018) runs on a copy of the model
for ``--sanity-steps`` steps from the logits down and reports the smallest rank correlation with
the original map and whether the method is flagged as insensitive to the model.

Boxes are ``TOP,LEFT,BOTTOM,RIGHT`` in pixels of the ORIGINAL image (bottom/right exclusive, like
slicing), one ``--box`` per image in order; they are scaled to the model's input size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import BadArgument
from ..methods.evaluation.metrics import get_metric, metric_names
from ..methods.registry import method_names
from ..model.targets import parse_target
from ..tasks.evaluate import evaluate
from .common import add_model_options, model_from_args, print_json
from .options import add_json, add_layer, add_method_options, add_target, parse_options
from .output import aligned
from .progress import progress_bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="faithfulness (deletion/insertion, boxes) and sanity scores")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or sample:NAME")
    p.add_argument("--method", required=True,
                   help=f"a method, comma-separated methods or all ({', '.join(method_names())})")
    add_target(p)
    add_layer(p)
    p.add_argument("--box", action="append", metavar="TOP,LEFT,BOTTOM,RIGHT",
                   help="object box in original image pixels, once per image (optional)")
    p.add_argument("--metrics", metavar="NAMES",
                   help="metrics or groups, comma-separated, or all (default: deletion and insertion "
                        f"AUC, and the box metrics with --box); known: {', '.join(metric_names())}")
    p.add_argument("--steps", type=int, default=100, help="deletion/insertion steps (default 100)")
    p.add_argument("--sanity", action="store_true", help="run the cascading randomization test")
    p.add_argument("--sanity-steps", type=int, default=5,
                   help="randomization steps (blocks) from the logits down (default 5)")
    add_method_options(p)
    p.add_argument("--out", help="write the results as JSON to this file")
    add_json(p, "print the results as JSON instead of a table")
    add_model_options(p)
    p.set_defaults(func=run_evaluate)


def parse_box(text: str) -> list[float]:
    """``"T,L,B,R"`` -> four numbers (checked against the image by the task)."""
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise BadArgument(f"--box {text!r}: give TOP,LEFT,BOTTOM,RIGHT, four numbers")
    return box


def format_table(rows: list[dict[str, Any]]) -> str:
    """Methods as rows, metrics as columns (means over images, an arrow for the better way); a
    failed method shows its error."""
    names = list(dict.fromkeys(k[:-5] for r in rows for k in r if k.endswith("_mean")))
    shown = [(f"{n}_mean", n + ("↑" if get_metric(n).higher_is_better else "↓")) for n in names]
    sanity = any("sanity" in r for r in rows)
    header = ["method", *(h for _, h in shown)] + (["sanity ρmin", "flag"] if sanity else [])
    table = [header]
    for r in rows:
        if "error" in r:
            continue
        cells = [r["method"], *(f"{r[k]:.3f}" for k, _ in shown)]
        if sanity:
            s = r["sanity"]
            cells += [f"{s['lowest_spearman']:.2f}", "INSENSITIVE" if s["flagged"] else "ok"]
        table.append(cells)
    lines = aligned(table)
    lines += [f"{r['method']}: error: {r['error']}" for r in rows if "error" in r]
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.sanity_steps < 1:
        raise BadArgument("--steps and --sanity-steps must be positive integers")
    boxes = [parse_box(b) for b in args.box] if args.box else None
    model = model_from_args(args)
    with progress_bar(1, "evaluate") as progress:
        result = evaluate(model, args.images, args.method, target=parse_target(args.target),
                          layer=args.layer, boxes=boxes, metrics=args.metrics, steps=args.steps,
                          sanity=args.sanity,
                          sanity_steps=args.sanity_steps, options=parse_options(args.option),
                          progress=progress)
    report = result.summary()
    report = {"model": report.pop("model"), "images": args.images, **report}
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    if args.json:
        print_json(report)
    else:
        print(format_table(report["methods"]))
        if args.out:
            print(f"wrote {args.out}")
    return 0
