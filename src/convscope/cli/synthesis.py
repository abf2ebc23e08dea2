"""``convscope invert | texture | style``: pictures made from a network's features.

Each command optimizes an image (``--steps``, ``--size``, a progress bar), writes the PNG given by
``--out`` (the result alone, or with ``--compare`` the inputs and the result side by side), a JSON
summary next to it (``OUT.json``) and prints the summary with ``--json``. The helpers at the top
are shared with :mod:`.adversarial`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import load_image
from ..errors import BadArgument
from ..methods.synthesis import invert, synthesize_texture, transfer_style
from ..model import Model
from ..render import image_grid, save_png
from .common import add_model_options, model_from_args, print_json
from .progress import progress_bar


def add_run_options(p: argparse.ArgumentParser, *, steps: int, size_help: str) -> None:
    p.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default {steps})")
    p.add_argument("--size", type=int, help=size_help)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", help="PNG to write (a JSON summary goes next to it)")
    p.add_argument("--json", action="store_true", help="print the JSON summary")


def sized(model: Model, image: Tensor, size: int | None) -> Tensor:
    """(1, 3, S, S) in [0, 1]: ``size`` (default the model's input size), antialiased."""
    if size is not None and size < 8:
        raise BadArgument(f"--size {size}: use at least 8 pixels")
    target = (size, size) if size else model.input_size
    out = F.interpolate(image[None].float(), size=target, mode="bilinear", antialias=True,
                        align_corners=False)
    return out.clamp(0, 1).to(model.device)


def _shorter_side(image: Tensor, size: int) -> Tensor:
    """Resize so the shorter side is ``size`` (keeps the aspect ratio), (1, 3, h, w)."""
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    new = (max(8, round(h * scale)), max(8, round(w * scale)))
    return F.interpolate(image[None].float(), size=new, mode="bilinear", antialias=True,
                         align_corners=False).clamp(0, 1)


def finish(args: argparse.Namespace, out: Path, picture: Any, summary: dict[str, Any], line: str,
           extra: dict[Path, Any] | None = None) -> int:
    """Save the picture(s) and ``OUT.json``; print the summary (``--json``) or one line."""
    png = save_png(picture, out)
    written = {"png": str(png)}
    for path, image in (extra or {}).items():
        written[path.stem] = str(save_png(image, path))
    summary = {**summary, "files": written}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print_json(summary)
    else:
        print(f"{png}: {line}")
    return 0


def _steps(args: argparse.Namespace) -> None:
    if args.steps < 1:
        raise BadArgument(f"--steps {args.steps}: give at least 1")


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


def _layers(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise BadArgument("give at least one layer name")
    return names


def run_invert(args: argparse.Namespace) -> int:
    _steps(args)
    model = model_from_args(args)
    layers = _layers(args.layers) or []
    image = sized(model, load_image(args.image), args.size)[0]
    with progress_bar(args.steps, "invert") as progress:
        r = invert(model, image, layers, steps=args.steps, tv=args.tv, l2=args.l2, param=args.param,
                   optimizer=args.optimizer, seed=args.seed, progress=progress)
    captions = ["original"] + [f"{n}: distance {float(d):.3f}" for n, d in zip(r.layers, r.end_distance)]
    picture = image_grid(torch.cat([image[None].cpu(), r.images.cpu()]), captions=captions,
                         ncols=len(layers) + 1, title=f"{model.name}: inversion from each layer")
    summary = {"layers": list(r.layers), "start_distance": [round(float(d), 5) for d in r.start_distance],
               "end_distance": [round(float(d), 5) for d in r.end_distance],
               "steps": args.steps, "seconds": round(r.seconds, 3)}
    line = ", ".join(f"{n} {float(a):.3f}->{float(b):.3f}"
                     for n, a, b in zip(r.layers, r.start_distance, r.end_distance))
    return finish(args, Path(args.out or "inversion.png"), picture, summary, f"feature distance {line}")


def run_texture(args: argparse.Namespace) -> int:
    _steps(args)
    model = model_from_args(args)
    source = _shorter_side(load_image(args.image), args.source_size)[0].to(model.device)
    size = args.size or 224
    with progress_bar(args.steps, "texture") as progress:
        r = synthesize_texture(model, source, layers=_layers(args.layers), size=size, steps=args.steps,
                               param=args.param, optimizer=args.optimizer, seed=args.seed,
                               progress=progress)
    result = r.images[0].cpu()
    picture: Any = result
    if args.compare:
        picture = image_grid([source.cpu(), result], captions=["source", "synthesized"], ncols=2,
                             tile_size=size)
    summary = {"layers": list(r.layers), "start_loss": float(r.start_loss[0]),
               "end_loss": float(r.end_loss[0]), "reduction": round(float(r.reduction[0]), 5),
               "size": size, "steps": args.steps, "seconds": round(r.seconds, 3)}
    line = f"Gram loss {summary['start_loss']:.4g} -> {summary['end_loss']:.4g}"
    return finish(args, Path(args.out or "texture.png"), picture, summary, line)


def run_style(args: argparse.Namespace) -> int:
    _steps(args)
    model = model_from_args(args)
    size = args.size or 224
    content = _shorter_side(load_image(args.content), size)[0].to(model.device)
    style = _shorter_side(load_image(args.style), size)[0].to(model.device)
    with progress_bar(args.steps, "style") as progress:
        r = transfer_style(model, content, style, content_layer=args.content_layer,
                           style_layers=_layers(args.style_layers), content_weight=args.content_weight,
                           style_weight=args.style_weight, tv=args.tv, optimizer=args.optimizer,
                           start=args.start, steps=args.steps, preserve_colors=args.preserve_colors,
                           seed=args.seed, progress=progress)
    result = r.images[0].cpu()
    picture: Any = result
    if args.compare:
        picture = image_grid([content.cpu(), style.cpu(), result], captions=["content", "style", "result"],
                             ncols=3, tile_size=size)
    summary = {"content_layer": r.content_layer, "style_layers": list(r.style_layers),
               "content_loss": [float(r.content_start[0]), float(r.content_end[0])],
               "style_loss": [float(r.style_start[0]), float(r.style_end[0])],
               "optimizer": args.optimizer, "start": args.start, "steps": args.steps,
               "preserve_colors": args.preserve_colors, "seconds": round(r.seconds, 3)}
    line = (f"content loss {r.content_start.item():.4g} -> {r.content_end.item():.4g}, "
            f"style loss {r.style_start.item():.4g} -> {r.style_end.item():.4g}")
    return finish(args, Path(args.out or "style.png"), picture, summary, line)
