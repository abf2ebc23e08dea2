"""``convscope invert | texture | style``: pictures made from a network's features.

Each command optimizes an image (``--steps``, ``--size``, a progress bar), writes the PNG given by
``--out`` (the result alone, or with ``--compare`` the inputs and the result side by side), a JSON
summary next to it (``OUT.json``) and prints the summary with ``--json``.
The work is done by :mod:`convscope.tasks.synthesis`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BadArgument
from ..tasks.synthesis import inversion, layer_list, style, texture
from .common import add_model_options, model_from_args
from .options import add_run_options
from .output import write_synthesis
from .progress import progress_bar


def _steps(args: argparse.Namespace) -> None:
    if args.steps < 1:
        raise BadArgument(f"--steps {args.steps}: give at least 1")


def _size(args: argparse.Namespace) -> None:
    if args.size is not None and args.size < 8:
        raise BadArgument(f"--size {args.size}: use at least 8 pixels")


def register(sub: argparse._SubParsersAction) -> None:
    inv = sub.add_parser("invert", help="feature inversion: reconstruct an image from a layer",
                         description="Reconstruct the image from its features at each of --layers "
                                     "(Mahendran & Vedaldi 2015), side by side.")
    inv.add_argument("image", help="image file, URL or sample:NAME")
    inv.add_argument("--layers", required=True, help="comma-separated layer names (convscope layers)")
    inv.add_argument("--tv", type=float, default=0.01, help="total-variation weight (default 0.01)")
    inv.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    inv.add_argument("--l2", type=float, default=0.0, help="L2 prior weight (default 0)")
    inv.add_argument("--param", choices=["pixel", "fourier"], default="fourier")
    add_run_options(inv, steps=200, size_help="resize the image to S pixels (default: model input)")
    add_model_options(inv)
    inv.set_defaults(func=run_invert)

    tex = sub.add_parser("texture", help="texture synthesis from Gram matrices (Gatys et al. 2015)",
                         description="Synthesize a new texture with the feature statistics of IMAGE.")
    tex.add_argument("image", help="texture image file, URL or sample:NAME")
    tex.add_argument("--layers", help="comma-separated style layers (default: the model's style layers)")
    tex.add_argument("--source-size", type=int, default=224, help="texture resized to this shorter side")
    tex.add_argument("--param", choices=["pixel", "fourier"], default="fourier")
    tex.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    tex.add_argument("--compare", action="store_true", help="write source | synthesized side by side")
    add_run_options(tex, steps=100, size_help="output size in pixels (default 224)")
    add_model_options(tex)
    tex.set_defaults(func=run_texture)

    sty = sub.add_parser("style", help="neural style transfer (Gatys et al. 2016)",
                         description="Paint CONTENT in the style of STYLE by optimization.")
    sty.add_argument("content", help="content image")
    sty.add_argument("style", help="style image")
    sty.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    sty.add_argument("--start", choices=["content", "noise"], default="content")
    sty.add_argument("--content-layer", help="default: the model's content layer")
    sty.add_argument("--style-layers", help="comma-separated; default: the model's style layers")
    sty.add_argument("--style-weight", type=float, default=1e4, help="default 1e4")
    sty.add_argument("--content-weight", type=float, default=1.0, help="default 1")
    sty.add_argument("--tv", type=float, default=0.0, help="total-variation weight (default 0)")
    sty.add_argument("--preserve-colors", action="store_true", help="luminance-only transfer")
    sty.add_argument("--compare", action="store_true", help="write content | style | result")
    add_run_options(sty, steps=100, size_help="content's shorter side in pixels (default 224)")
    add_model_options(sty)
    sty.set_defaults(func=run_style)


def run_invert(args: argparse.Namespace) -> int:
    _steps(args)
    _size(args)
    model = model_from_args(args)
    with progress_bar(args.steps, "invert") as progress:
        made = inversion(model, args.image, layer_list(model, args.layers) or [], size=args.size,
                         steps=args.steps, tv=args.tv, l2=args.l2, param=args.param,
                         optimizer=args.optimizer, seed=args.seed, progress=progress)
    return write_synthesis(args, Path(args.out or "inversion.png"), made)


def run_texture(args: argparse.Namespace) -> int:
    _steps(args)
    model = model_from_args(args)
    with progress_bar(args.steps, "texture") as progress:
        made = texture(model, args.image, layers=layer_list(model, args.layers), source_size=args.source_size,
                       size=args.size or 224, steps=args.steps, param=args.param,
                       optimizer=args.optimizer, seed=args.seed, compare=args.compare,
                       progress=progress)
    return write_synthesis(args, Path(args.out or "texture.png"), made)


def run_style(args: argparse.Namespace) -> int:
    _steps(args)
    model = model_from_args(args)
    with progress_bar(args.steps, "style") as progress:
        made = style(model, args.content, args.style, size=args.size or 224,
                     content_layer=args.content_layer, style_layers=layer_list(model, args.style_layers),
                     content_weight=args.content_weight, style_weight=args.style_weight, tv=args.tv,
                     optimizer=args.optimizer, start=args.start, steps=args.steps,
                     preserve_colors=args.preserve_colors, seed=args.seed, compare=args.compare,
                     progress=progress)
    return write_synthesis(args, Path(args.out or "style.png"), made)
