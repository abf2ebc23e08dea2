"""``convscope adversarial`` and ``convscope fool``: images that make the network see a class.

``adversarial IMAGE --target T --eps 4/255`` runs PGD (or FGSM) within a pixel budget and writes
the adversarial image (8-bit, within budget, still fooling when loaded back), the amplified
perturbation next to it (``OUT_perturbation.png``) and a JSON summary (``OUT.json``). The image is
first resized to ``--size`` (default: the model's input) and rounded to 8 bits: that is the
original the budget is measured against. ``fool --target T`` optimizes noise into the class.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from ..data import load_image
from ..errors import BadArgument
from ..methods.synthesis import fgsm, fool, on_grid, pgd
from ..model import Model
from .common import add_model_options, model_from_args
from .options import parse_target
from .progress import progress_bar
from .synthesis import add_run_options, finish, sized

DEFAULT_MARGIN = 0.5
"""A stop at "koala 15.8% against 15.3%" convinces nobody; the target must lead by 50 points."""


def parse_eps(text: str) -> float:
    """``4/255``, ``0.0157`` or ``1e-2`` -> float; pixel units of images in [0, 1]."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise BadArgument(f"--eps {text!r}: give a number or a fraction such as 4/255") from None
    if not value > 0:
        raise BadArgument(f"--eps {text!r}: the budget must be > 0")
    return value


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


def _label(model: Model, index: int) -> str:
    return f"{model.label(index)} ({index})"


def run_adversarial(args: argparse.Namespace) -> int:
    eps = parse_eps(args.eps)
    model = model_from_args(args)
    image = on_grid(sized(model, load_image(args.image), args.size))
    target: Any = parse_target(args.target) if args.target is not None else None
    if args.method == "fgsm":
        result = fgsm(model, image, eps=eps, target=target, norm=args.norm, quantize=not args.no_quantize)
    else:
        step = parse_eps(args.step_size) if args.step_size else None
        with progress_bar(args.steps, "adversarial") as progress:
            result = pgd(model, image, eps=eps, target=target, norm=args.norm, steps=args.steps,
                         step_size=step, random_start=args.random_start,
                         early_stop=not args.no_early_stop, quantize=not args.no_quantize,
                         seed=args.seed, margin=args.margin, progress=progress)
    delta = result.perturbation[0]
    scale = float(delta.abs().max())
    picture = (0.5 + 0.5 * delta / scale if scale > 0 else torch.full_like(delta, 0.5)).clamp(0, 1)
    out = Path(args.out or "adversarial.png")
    extra = {out.with_name(out.stem + "_perturbation.png"): picture.cpu()}
    summary = {
        "method": args.method, "norm": args.norm, "eps": eps, "eps_255": round(eps * 255, 4),
        "target": _label(model, int(result.target[0])) if result.target is not None else None,
        "original": _label(model, int(result.original_class[0])),
        "original_prob": round(float(result.original_prob[0]), 4),
        "adversarial": _label(model, int(result.new_class[0])),
        "adversarial_prob": round(float(result.new_prob[0]), 4),
        "success": bool(result.success[0]), "steps": int(result.steps[0]),
        "linf": float(result.linf[0]), "linf_255": round(float(result.linf[0]) * 255, 4),
        "l2": round(float(result.l2[0]), 6), "quantized": result.quantized,
        "perturbation_amplified": round(0.5 / scale, 2) if scale > 0 else None,
    }
    line = (f"{summary['original']} -> {summary['adversarial']} p={summary['adversarial_prob']:.3f} "
            f"({'success' if summary['success'] else 'FAILED'}, {summary['steps']} steps, "
            f"linf {summary['linf_255']:.2f}/255, l2 {summary['l2']:.4f})")
    return finish(args, out, result.images[0].cpu(), summary, line, extra)


def run_fool(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    start: Any = args.start
    if args.start not in ("noise", "zeros"):
        start = sized(model, load_image(args.start), args.size)
    with progress_bar(args.steps, "fool") as progress:
        result = fool(model, parse_target(args.target), threshold=args.threshold, steps=args.steps,
                      size=args.size, start=start, lr=args.lr or 0.05, seed=args.seed, progress=progress)
    summary = {
        "target": _label(model, int(result.target[0])), "confidence": round(float(result.confidence[0]), 6),
        "predicted": _label(model, int(result.predicted[0])), "threshold": args.threshold,
        "success": bool(result.success[0]), "steps": result.steps, "seconds": round(result.seconds, 3),
    }
    line = (f"{summary['target']}: confidence {summary['confidence']:.4f} after {result.steps} steps "
            f"({'success' if summary['success'] else 'below threshold'})")
    return finish(args, Path(args.out or "fool.png"), result.images[0].cpu(), summary, line)
