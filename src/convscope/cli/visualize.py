"""``convscope visualize``: feature visualization (activation maximization) as a PNG.

One objective (``--objective "channel:_blocks.8:3"``, ``"logit:285"``, ``"layer:_blocks.6"``, ...)
gives one picture, or a captioned grid when it optimizes several units at once
(``channel:_blocks.8:0-7``). ``--layer L --gallery N`` is the gallery of a layer: its first N
channels (from ``--first``), all optimized together in one batch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BadArgument
from ..methods.features import Objective, channel
from ..render import save_png
from ..tasks.visualize import visualization
from .common import add_model_options, model_from_args, print_json
from .objectives import parse_objective
from .progress import progress_bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("visualize", help="feature visualization: an image that excites a unit",
                       description="Feature visualization (activation maximization): optimize an "
                                   "image so that a unit, channel, layer or class responds strongly.")
    what = p.add_argument_group("what to visualize (one of)")
    what.add_argument("--objective", metavar="SPEC",
                      help='e.g. "channel:LAYER:C", "neuron:LAYER:C[:Y:X]", "layer:LAYER", '
                           '"logit:285", "logit:Egyptian cat", "prob:285"; C may be 3,7,9 or 0-7 '
                           '(one image each); terms join with + and take weights: "2*channel:..."')
    what.add_argument("--layer", help="with --gallery: the layer whose channels to show")
    what.add_argument("--gallery", type=int, metavar="N", help="show the first N channels of --layer")
    what.add_argument("--first", type=int, default=0, help="first channel of the gallery (default 0)")
    opt = p.add_argument_group("optimization")
    opt.add_argument("--param", choices=["pixel", "fourier"], default="fourier",
                     help="image parameterization (default fourier: decorrelated colour, 1/f spectrum)")
    opt.add_argument("--steps", type=int, default=256, help="optimizer steps (default 256)")
    opt.add_argument("--size", type=int, help="image size in pixels (default: the model's input)")
    opt.add_argument("--lr", type=float, help="Adam learning rate (default 0.05)")
    opt.add_argument("--l2", type=float, default=0.0,
                     help="weight of the L2 penalty, a mean over pixels (default 0; 400 is moderate)")
    opt.add_argument("--tv", type=float, default=0.0,
                     help="weight of total variation, a mean over pixels (default 0; 100 is strong)")
    opt.add_argument("--blur-every", type=int, default=0, metavar="K", help="blur the image every K steps")
    opt.add_argument("--blur-sigma", type=float, default=0.5, help="blur width in pixels (default 0.5)")
    opt.add_argument("--decay", type=float, default=1.0, help="Fourier spectrum decay (default 1)")
    opt.add_argument("--no-transforms", action="store_true", help="no jitter / scale / rotation")
    opt.add_argument("--batch", type=int, help="images per unit objective (default 1)")
    opt.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    opt.add_argument("--start", default="noise", help="noise (default), zeros, or an image to start from")
    p.add_argument("--out", help="PNG to write (default visualize.png)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    add_model_options(p)
    p.set_defaults(func=run_visualize)


def _objective(args: argparse.Namespace) -> Objective:
    if args.gallery is not None:
        if args.objective or not args.layer:
            raise BadArgument("--gallery N needs --layer L and no --objective")
        if args.gallery < 1 or args.first < 0:
            raise BadArgument("--gallery needs N >= 1 and --first >= 0")
        return channel(args.layer, list(range(args.first, args.first + args.gallery)))
    if not args.objective:
        raise BadArgument("give --objective SPEC, or --layer L --gallery N")
    if args.layer:
        raise BadArgument("--layer is only for --gallery; put the layer in --objective")
    return parse_objective(args.objective)


def run_visualize(args: argparse.Namespace) -> int:
    objective = _objective(args)
    model = model_from_args(args)
    with progress_bar(args.steps, "visualize") as progress:
        made = visualization(model, objective, param=args.param, steps=args.steps, size=args.size,
                             lr=args.lr, l2=args.l2, tv=args.tv, blur_every=args.blur_every,
                             blur_sigma=args.blur_sigma, decay=args.decay, batch=args.batch,
                             transforms="none" if args.no_transforms else "standard",
                             start=args.start, seed=args.seed, progress=progress)
    png = save_png(made.picture, Path(args.out or "visualize.png"))
    if args.json:
        print_json({**made.summary, "png": str(png)})
    else:
        print(f"{objective.name}: {png} ({made.headline})")
    return 0
