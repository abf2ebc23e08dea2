"""Inside the network: ``convscope filters``, ``featuremaps`` and ``mask``.

Each command calls one task of :mod:`convscope.tasks.inside` and writes its picture as one PNG
(``--json`` also prints a summary).
"""

from __future__ import annotations

import argparse

from ..render.heatmap import save_png
from ..tasks.inputs import stem
from ..tasks.inside import View, featuremaps, filters, mask
from .common import add_model_options, model_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("filters", help="a conv layer's filters (weights) as a tile grid")
    p.add_argument("--layer", help="Conv2d layer (default and auto: the first one)")
    p.add_argument("--max", type=int, default=64, metavar="N", help="filters per page (default 64)")
    p.add_argument("--page", type=int, default=0, metavar="P", help="page, from 0 (default 0)")
    p.add_argument("--view", default="auto", choices=["auto", "rgb", "channels", "mean", "depthwise", "gray"],
                   help="how to show a filter (default auto: rgb for RGB input, one tile per "
                        "channel for depthwise, one tile per input channel otherwise)")
    p.add_argument("--sort", default="index", choices=["index", "norm"],
                   help="order filters by index or by L2 norm, largest first (default index)")
    p.add_argument("--normalize", default="minmax", choices=["minmax", "symmetric"],
                   help="per-filter scaling to [0,1]; symmetric puts 0 at mid-gray (default minmax)")
    p.add_argument("--out", help="PNG to write (default filters_LAYER.png)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    add_model_options(p)
    p.set_defaults(func=run_filters)

    p = sub.add_parser("featuremaps", help="a layer's feature maps for one image")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    p.add_argument("--layer", required=True, help="layer with (C,h,w) output, or auto")
    p.add_argument("--sort", default="mean", choices=["none", "mean", "max"],
                   help="rank channels by spatial mean or max activation (default mean)")
    p.add_argument("--top", type=int, default=16, metavar="N", help="channels to show (default 16)")
    p.add_argument("--scale", default="channel", choices=["channel", "shared"],
                   help="colour range per map or shared by all maps (default channel)")
    p.add_argument("--out", help="PNG to write (default IMAGE_featuremaps_LAYER.png)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    add_model_options(p)
    p.set_defaults(func=run_featuremaps)

    p = sub.add_parser("mask", help="where one channel fires: activation thresholded on the image")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    p.add_argument("--layer", required=True, help="layer with (C,h,w) output, or auto")
    p.add_argument("--channel", type=int, required=True, metavar="C", help="channel index")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--quantile", type=float, metavar="Q",
                     help="keep pixels above this quantile of the upsampled map (default 0.995: "
                          "the top 0.5%%, as in Network Dissection)")
    how.add_argument("--threshold", type=float, metavar="T",
                     help="keep pixels whose upsampled activation is >= T (layer units)")
    p.add_argument("--out", help="PNG to write (default IMAGE_mask_LAYER_cC.png)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    add_model_options(p)
    p.set_defaults(func=run_mask)


def _show(args: argparse.Namespace, view: View, default_out: str) -> int:
    out = save_png(view.picture, args.out or default_out)
    if args.json:
        print_json({**view.summary, "png": str(out)})
    else:
        print(f"{view.title}: {out}")
    return 0


def run_filters(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    view = filters(model, args.layer, view=args.view, sort=args.sort, normalize=args.normalize,
                   max_filters=args.max, page=args.page)
    return _show(args, view, f"filters_{view.summary['layer']}.png")


def run_featuremaps(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    view = featuremaps(model, args.image, args.layer, sort=args.sort, top=args.top, scale=args.scale)
    return _show(args, view, f"{stem(args.image)}_featuremaps_{view.summary['layer']}.png")


def run_mask(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    view = mask(model, args.image, args.layer, args.channel, quantile=args.quantile,
                threshold=args.threshold)
    s = view.summary
    out = save_png(view.picture, args.out or f"{stem(args.image)}_mask_{s['layer']}_c{s['channel']}.png")
    if args.json:
        print_json({**s, "png": str(out)})
    else:
        print(f"{view.title} (threshold {s['threshold']:.3g}, {100 * s['fraction']:.2f}% of "
              f"pixels): {out}")
    return 0
