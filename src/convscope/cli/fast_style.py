"""``convscope fast-style train|apply``: feed-forward style transfer (Johnson et al. 2016).

``train STYLE --images SRC... --out NET`` trains a transformation network on random crops of the
content images (folders, files, ``sample:NAME``, or ``samples`` for every sample photo) so that
its outputs carry STYLE's Gram statistics in the feature network (``--model``, default the
embedded EfficientNet-Lite0). ``apply NET IMAGE...`` stylizes images of any size in one forward
pass each and writes PNGs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..data import load_image
from ..errors import BadArgument
from ..methods.synthesis.fast_style import load_fast_style
from ..model.device import pick_device
from ..render import save_png
from ..tasks.fast_style import DEFAULT_BLOCKS, DEFAULT_WIDTH, apply_style, content_images, train
from .common import add_model_options, model_from_args, print_json
from .progress import progress_bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fast-style", help="fast style transfer: train a style network, apply it",
                       description="Fast (feed-forward) style transfer, Johnson et al. 2016.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", parser_class=type(p))
    verbs.required = True
    t = verbs.add_parser("train", help="train a network for one style",
                         description="Train a transformation network to paint content images in "
                                     "the style of STYLE.")
    t.add_argument("style", metavar="STYLE", help="style image file or sample:NAME")
    t.add_argument("--images", nargs="+", required=True, metavar="SRC",
                   help="content images: folders, files, sample:NAME, or 'samples' (all sample photos)")
    t.add_argument("--out", required=True, metavar="NET", help="network file to write (.pt)")
    t.add_argument("--steps", type=int, default=300, help="training steps in all (default 300)")
    t.add_argument("--size", type=int, default=128, help="crop size in pixels (default 128)")
    t.add_argument("--batch", type=int, default=4, help="crops per step (default 4)")
    t.add_argument("--style-weight", type=float, default=3.0, help="style weight (default 3)")
    t.add_argument("--content-weight", type=float, default=1.0, help="content weight (default 1)")
    t.add_argument("--tv-weight", type=float, default=0.0, help="total variation weight (default 0)")
    t.add_argument("--style-size", type=int, help="style image's shorter side (default 2 x --size)")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    t.add_argument("--width", type=int, help=f"base channels of the network (default {DEFAULT_WIDTH})")
    t.add_argument("--blocks", type=int, help=f"residual blocks (default {DEFAULT_BLOCKS})")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                   help="also save NET every K steps (default: only at the end)")
    t.add_argument("--resume", action="store_true", help="continue the training saved in NET")
    t.add_argument("--json", action="store_true", help="print a machine-readable summary")
    add_model_options(t)
    t.set_defaults(func=run_train)
    a = verbs.add_parser("apply", help="stylize images with a trained network",
                         description="Stylize images with a network from `fast-style train`.")
    a.add_argument("net", metavar="NET", help="network file written by `fast-style train`")
    a.add_argument("images", nargs="+", metavar="IMAGE", help="image files or sample:NAME")
    a.add_argument("--out-dir", help="folder for NAME_styled.png files (default: current folder)")
    a.add_argument("--out", help="PNG to write (one IMAGE only)")
    a.add_argument("--size", type=int, help="resize each image so its longer side is SIZE pixels first")
    a.add_argument("--batch", type=int, default=4, help="images per forward pass (default 4)")
    a.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    a.add_argument("--json", action="store_true", help="print a machine-readable summary")
    a.set_defaults(func=run_apply)


def run_train(args: argparse.Namespace) -> int:
    if args.resume and not Path(args.out).is_file():
        raise BadArgument(f"--resume: {args.out!r} does not exist; train without --resume first")
    style = load_image(args.style)
    contents = content_images(args.images)
    model = model_from_args(args)
    with progress_bar(args.steps, "fast-style train") as progress:
        made = train(model, style, contents, steps=args.steps, size=args.size, batch=args.batch,
                     style_weight=args.style_weight, content_weight=args.content_weight,
                     tv_weight=args.tv_weight, style_size=args.style_size, lr=args.lr,
                     width=args.width, blocks=args.blocks, seed=args.seed,
                     checkpoint_every=args.checkpoint_every, out=args.out, resume=args.resume,
                     progress=progress)
    summary = {"net": str(args.out), "style": args.style, **made.summary}
    if args.json:
        print_json(summary)
    else:
        change = (f"; loss {summary['loss_first']:.4g} -> {summary['loss_last10']:.4g}"
                  if summary["steps_run"] else "; nothing left to train")
        print(f"{args.out}: {summary['steps_run']} steps in {summary['seconds']:.1f}s{change}")
    return 0


def _out_paths(args: argparse.Namespace) -> list[Path]:
    if args.out is not None:
        if len(args.images) != 1 or args.out_dir is not None:
            raise BadArgument("--out takes one IMAGE and no --out-dir; use --out-dir for several")
        return [Path(args.out)]
    folder = Path(args.out_dir or ".")
    stems: list[str] = []
    for src in args.images:
        stem = src.removeprefix("sample:") if src.startswith("sample:") else Path(src).stem
        stem = f"{stem}_{len(stems)}" if stem in stems else stem
        stems.append(stem)
    return [folder / f"{stem}_styled.png" for stem in stems]


def run_apply(args: argparse.Namespace) -> int:
    if (args.size is not None and args.size < 1) or args.batch < 1:
        raise BadArgument("--size and --batch must be positive")
    outs = _out_paths(args)
    net = load_fast_style(args.net, device=pick_device(args.device))
    start = time.perf_counter()
    styled = apply_style(net, args.images, size=args.size, batch_size=args.batch)
    seconds = time.perf_counter() - start
    rows = []
    for src, image, out in zip(args.images, styled, outs):
        png = save_png(image, out)
        rows.append({"image": src, "png": str(png), "size": [image.shape[-1], image.shape[-2]]})
    if args.json:
        print_json({"net": str(args.net), **net.config, "seconds": round(seconds, 3), "images": rows})
    else:
        for row in rows:
            print(f"{row['image']} -> {row['png']} ({row['size'][0]}x{row['size'][1]})")
        print(f"{len(rows)} image(s) in {seconds:.2f}s")
    return 0

