"""``convscope adversarial`` and ``convscope fool``: images that make the network see a class.

``adversarial IMAGE --target T --eps 4/255`` runs PGD (or FGSM) within a pixel budget and writes
the adversarial image (8-bit, within budget, still fooling when loaded back), the amplified
perturbation next to it (``OUT_perturbation.png``) and a JSON summary (``OUT.json``). The image is
first resized to ``--size`` (default: the model's input) and rounded to 8 bits: that is the
original the budget is measured against. ``fool --target T`` optimizes noise into the class.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import BadArgument
from ..model.targets import parse_target
from ..tasks.adversarial import DEFAULT_MARGIN, adversarial, fooling, parse_budget
from .common import add_model_options, model_from_args
from .options import add_run_options
from .output import write_synthesis
from .progress import progress_bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("adversarial", help="adversarial example within a pixel budget (PGD / FGSM)",
                       description="Change an image by at most --eps per pixel (L-inf) or in total "
                                   "(L2) so the network predicts --target (or anything else).")
    p.add_argument("image", help="image file, URL or sample:NAME")
    p.add_argument("--target", help="class index or label to reach (default: untargeted)")
    p.add_argument("--eps", default="4/255", help="budget in [0,1] pixel units, e.g. 4/255 (default)")
    p.add_argument("--norm", choices=["linf", "l2"], default="linf", help="budget norm (default linf)")
    p.add_argument("--method", choices=["pgd", "fgsm"], default="pgd", help="attack (default pgd)")
    p.add_argument("--step-size", help="PGD step, e.g. 1/255 (default max(2.5 eps/steps, eps/4))")
    p.add_argument("--random-start", action="store_true", help="PGD from a random point in the ball")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help="success needs the target's probability to beat every other class by this "
                        f"much (default {DEFAULT_MARGIN}; 0: any change of the prediction)")
    p.add_argument("--no-early-stop", action="store_true", help="take every step even after success")
    p.add_argument("--no-quantize", action="store_true", help="do not round the result to 8 bits")
    add_run_options(p, steps=40, size_help="resize the image to S pixels first (default: the model's "
                                           "input, so `convscope predict` sees the very pixels)")
    add_model_options(p)
    p.set_defaults(func=run_adversarial)

    f = sub.add_parser("fool", help="fooling image: noise the network takes for a class",
                       description="Optimize an image from noise until the network assigns --target "
                                   "a probability >= --threshold (Nguyen et al. 2015).")
    f.add_argument("--target", required=True, help="class index or label")
    f.add_argument("--threshold", type=float, default=0.99, help="confidence to reach (default 0.99)")
    f.add_argument("--start", default="noise", help="noise (default), zeros, or an image to start from")
    f.add_argument("--lr", type=float, help="Adam learning rate (default 0.05)")
    add_run_options(f, steps=200, size_help="image size in pixels (default: the model's input; other "
                                            "sizes get resized by `convscope predict`, which may "
                                            "change its verdict)")
    add_model_options(f)
    f.set_defaults(func=run_fool)


def _size(args: argparse.Namespace) -> None:
    if args.size is not None and args.size < 8:
        raise BadArgument(f"--size {args.size}: use at least 8 pixels")


def run_adversarial(args: argparse.Namespace) -> int:
    eps = parse_budget(args.eps, "--eps")
    _size(args)
    model = model_from_args(args)
    target: Any = parse_target(args.target) if args.target is not None else None
    step = parse_budget(args.step_size, "--step-size") if args.step_size else None
    with progress_bar(args.steps, "adversarial") as progress:
        made = adversarial(model, args.image, eps=eps, target=target, norm=args.norm,
                           method=args.method, steps=args.steps, step_size=step,
                           random_start=args.random_start, early_stop=not args.no_early_stop,
                           quantize=not args.no_quantize, seed=args.seed, size=args.size,
                           margin=args.margin, progress=progress)
    return write_synthesis(args, Path(args.out or "adversarial.png"), made)


def run_fool(args: argparse.Namespace) -> int:
    _size(args)
    model = model_from_args(args)
    with progress_bar(args.steps, "fool") as progress:
        made = fooling(model, parse_target(args.target), threshold=args.threshold, steps=args.steps,
                       size=args.size, start=args.start, lr=args.lr or 0.05, seed=args.seed,
                       progress=progress)
    return write_synthesis(args, Path(args.out or "fool.png"), made)
