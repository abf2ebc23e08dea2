"""``convscope crp``: which channels of a layer carried a decision, as PNG, JSON and HTML."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BadArgument
from ..model.targets import parse_target
from ..tasks.crp import crp
from .common import add_model_options, model_from_args, print_json
from .options import add_json, add_layer, add_target

COMPOSITES = ("epsilon_gamma_box", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
              "epsilon_alpha2_beta1_flat", "epsilon")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("crp", help="concept relevance propagation: channels ranked by relevance, "
                                   "each with its conditional heatmap")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files or sample:NAME")
    add_target(p)
    add_layer(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--units", help="channels to condition on, comma-separated; '+' joins "
                                       "channels into one concept: 3,7,12+15")
    which.add_argument("--top", type=int, help="each image's K most relevant channels (default 6)")
    p.add_argument("--composite", default="epsilon_gamma_box", choices=COMPOSITES,
                   help="LRP rules per layer (as for --method lrp)")
    p.add_argument("--batch-size", type=int, default=64, help="rows (image x condition) per pass")
    p.add_argument("--out", default="crp", help="folder for crp_<i>.png, crp.json, crp.html (default crp)")
    add_json(p)
    add_model_options(p)
    p.set_defaults(func=run_crp)


def parse_channels(text: str) -> list[int | list[int]]:
    """``"3,7,12+15"`` -> ``[3, 7, [12, 15]]``."""
    groups: list[int | list[int]] = []
    for part in text.split(","):
        try:
            numbers = [int(c) for c in part.split("+")]
        except ValueError:
            raise BadArgument(f"--units {text!r}: give channel numbers separated by commas, "
                              "'+' joining one concept's channels, e.g. 3,7,12+15") from None
        groups.append(numbers[0] if len(numbers) == 1 else numbers)
    return groups


def run_crp(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    channels = parse_channels(args.units) if args.units else None
    result = crp(model, args.images, target=parse_target(args.target), layer=args.layer,
                 channels=channels, top=args.top, composite=args.composite, batch_size=args.batch_size)
    written = result.save(Path(args.out))
    summary = result.summary() | {"files": [str(p) for p in written]}
    if args.json:
        print_json(summary)
        return 0
    for i, image in enumerate(args.images[:len(result)]):
        best = ", ".join(f"{c} ({r:.3g})" for c, r in result.ranked(i, 5))
        print(f"{image}: {result.target_labels[i]!r} at layer {result.layer}; most relevant channels: {best}")
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
