"""``convscope explain``: one attribution map for one image, as PNG, NPY and/or JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..data.images import load_image
from ..errors import BadArgument, BadTarget
from ..methods.registry import method_names
from ..model.targets import parse_box, parse_target, region_target
from ..model.wrapped import Model
from ..render import draw_boxes, save_png
from ..tasks.explain import explain
from ..tasks.inputs import model_inputs, stem
from ..types import Detection, Similarity, Target
from .common import add_model_options, model_from_args, print_json
from .options import add_json, add_layer, add_method_options, add_target, parse_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="attribution map of one image (or video) for one method")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME; for a video model "
                   "(--frames, torchvision video models) a folder of frames or an animated GIF/WebP")
    p.add_argument("--method", required=True, help=f"one of: {', '.join(method_names())}")
    add_target(p)
    p.add_argument("--region", metavar="MASK.png|x0,y0,x1,y1",
                   help="explain --target CLASS of a dense (segmentation) output summed over this "
                        "region, in the model input's pixels: a box or a mask image of that size "
                        "(non-black pixels)")
    p.add_argument("--reduce", choices=["mean", "sum"], default="mean",
                   help="--region: average (default) or sum the class scores over the region")
    p.add_argument("--reference", metavar="IMAGE",
                   help="explain the cosine similarity of the model's embedding to this image's")
    add_layer(p)
    add_method_options(p)
    p.add_argument("--out", help="overlay PNG (default IMAGE_METHOD.png); for a video, the frame strip")
    p.add_argument("--animation", metavar="FILE.gif|FILE.webp",
                   help="a video's overlay as an animated GIF or WebP")
    p.add_argument("--raw", help="write the map at input resolution as float32 .npy")
    p.add_argument("--box", nargs="?", const="0.2", metavar="FRACTION|x0,y0,x1,y1",
                   help="FRACTION: draw the localization box: map thresholded at FRACTION of its "
                        "maximum (default 0.2), largest connected component. x0,y0,x1,y1: explain a "
                        "detector's detection of --target in that box (model-input pixels)")
    add_json(p)
    add_model_options(p)
    p.set_defaults(func=run_explain)


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BadArgument(f"--box {text!r}: a FRACTION of the map's maximum (0.2), or a detection's "
                          "box x0,y0,x1,y1") from None


def _default_out(image: str, method: str) -> Path:
    return Path(f"{stem(image)}_{method}.png")


def _animation_path(path: str, clip: bool) -> Path:
    if not clip:
        raise BadArgument("--animation draws a video's overlay; this model explained an image "
                          "(give a video model: --frames T, or a torchvision video model)")
    if Path(path).suffix.lower() not in (".gif", ".webp"):
        raise BadArgument(f"--animation {path!r}: name a .gif or .webp file")
    return Path(path)


def _target(args: argparse.Namespace, model: Model) -> Target:
    """``--target``, or the detection, region or similarity that ``--box x0,y0,x1,y1`` /
    ``--region`` / ``--reference`` ask for (at most one of them)."""
    detection = args.box is not None and "," in args.box
    if detection + (args.region is not None) + (args.reference is not None) > 1:
        raise BadTarget("give one of --box x0,y0,x1,y1, --region and --reference, not several")
    if detection:  # a detection: the box and --target's label
        box, args.box = args.box, None
        return Detection(parse_box(box), parse_target(args.target))
    if args.box is not None:
        args.box = _fraction(args.box)
    if args.reference is not None:
        reference = model_inputs(model, args.reference)
        assert not isinstance(reference, tuple)
        return Similarity(reference, name=f"image {args.reference}")
    if args.region is None:
        return parse_target(args.target)
    box = args.region if args.region.replace(",", "").replace(" ", "").lstrip("-").isdigit() else None
    mask = None
    if box is None:
        mask = load_image(args.region).amax(0) > 0
    return region_target(args.target, box=box, mask=mask, reduce=args.reduce)


def run_explain(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    target = _target(args, model)
    result = explain(model, args.image, method=args.method, target=target,
                     layer=args.layer, **parse_options(args.option))
    out = Path(args.out) if args.out else _default_out(args.image, args.method)
    summary = result.summary() | {"image": args.image}
    picture = result.overlay(0)
    if args.animation:
        summary["animation"] = str(result.save(_animation_path(args.animation, result.is_clip))[0])
    if args.box is not None and result.is_clip:
        raise BadArgument("--box localizes an image's map; a video's map has no one box (drop --box)")
    if isinstance(target, Detection):  # outline the asked box, on the picture's pixels
        x0, y0, x1, y1 = target.box
        asked = torch.tensor([[y0, x0, y1, x1]])
        if result.framings is not None:
            asked = result.framings[0].image_boxes(asked[0])
        picture = draw_boxes(picture, asked, ["asked box"])
    if args.box is not None:
        box = result.localize(args.box).boxes[0]
        if result.framings is not None:  # the picture is the original image: map the box onto it
            box = result.framings[0].image_boxes(box)[0]
        picture = draw_boxes(picture, box[None], [f"{args.box:.0%} box"])
        summary["box"] = box.tolist()
    png = save_png(picture, out)
    summary["png"] = str(png)
    if args.raw:
        result.save_array(0, args.raw)
        summary["raw"] = str(args.raw)
    if args.json:
        print_json(summary)
    else:
        label = (result.explained or result.target_labels or ["callable"])[0]
        print(f"{args.method} for {label!r} on {args.image}: {png} ({result.seconds:.2f}s"
              + (f", layer {result.layer})" if result.layer else ")"))
        if "animation" in summary:
            print(f"animation: {summary['animation']}")
        if "box" in summary:
            print("box (top, left, bottom, right): " + ", ".join(map(str, summary["box"])))
    return 0
