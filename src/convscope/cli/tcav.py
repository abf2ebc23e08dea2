"""``convscope tcav``: does a class use a concept? TCAV scores, p-values and a bar chart.

    convscope tcav --model digits_planted --concept stripes=planted/concepts/stripes \\
        --randoms planted/random --inputs planted/class7 --target 7 --layer block3 --layer block4 \\
        --out tcav-out

Writes ``tcav.png`` (the chart), ``tcav.json`` (every number) and ``tcav.html`` (chart, table and
how to read them) under ``--out`` and prints the table. Concept and input sets are image folders
(or ``mnist5k``); ``--randoms`` is a folder with one subfolder per random set (at least 3).
"""

from __future__ import annotations

import argparse

from ..errors import BadArgument
from ..model.targets import parse_target
from ..tasks.concepts_tcav import tcav
from .common import add_model_options, model_from_args, print_json
from .output import aligned


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tcav", help="TCAV: concept sensitivity of a class, with significance tests")
    p.add_argument("--concept", action="append", required=True, metavar="NAME=FOLDER",
                   help="a concept's example images (repeat for several concepts)")
    p.add_argument("--randoms", required=True, metavar="FOLDER",
                   help="a folder with one subfolder of random images per random set (at least 3; "
                        "the first, by name, is the reference for random versus random)")
    p.add_argument("--inputs", required=True, metavar="FOLDER", help="images of the class to test")
    p.add_argument("--target", required=True, help="class index or label")
    p.add_argument("--layer", action="append", metavar="NAME",
                   help="layer to fit CAVs at (repeat for several; default auto)")
    p.add_argument("--alpha", type=float, default=0.01, help="L2 weight of the CAVs (default 0.01)")
    p.add_argument("--significance", type=float, default=0.05,
                   help="level of the Bonferroni-corrected t-test (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the CAVs' fit/held-out splits")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default="tcav-out", help="folder for tcav.png, tcav.json, tcav.html")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    add_model_options(p)
    p.set_defaults(func=run_tcav)


def parse_concepts(pairs: list[str]) -> dict[str, str]:
    """``["stripes=dir", ...]`` -> ``{"stripes": "dir"}``."""
    concepts = {}
    for text in pairs:
        name, sep, folder = text.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise BadArgument(f"--concept {text!r}: give NAME=FOLDER, e.g. stripes=concepts/stripes")
        concepts[name.strip()] = folder.strip()
    return concepts


def run_tcav(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    report = tcav(model, parse_concepts(args.concept), args.randoms, args.inputs, parse_target(args.target),
                  args.layer or "auto", alpha=args.alpha, significance=args.significance, seed=args.seed,
                  batch_size=args.batch_size)
    paths = report.save(args.out)
    if args.json:
        print_json(report.as_dict())
        return 0
    rows = [["concept", "layer", "score", "random", "p (corrected)", "verdict", "CAV acc."]]
    for d in report.rows():
        rows.append([d["concept"], d["layer"], f"{d['score']:.2f}", f"{d['random_score']:.2f}",
                     f"{d['p_corrected']:.2g}", d["verdict"], f"{d['cav_accuracy']:.2f}"])
    print("\n".join(aligned(rows)))
    print(f"wrote {paths['png']}, {paths['json']}, {paths['html']}")
    return 0
