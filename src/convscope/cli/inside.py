"""Inside the network: ``convscope filters``, ``featuremaps`` and ``mask``.

Each command computes tensors with :mod:`convscope.methods.features`, draws them with
:mod:`convscope.render.features` and writes one PNG (``--json`` also prints a summary).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..methods.features.activations import activation_mask, feature_maps
from ..methods.features.filters import filter_tiles
from ..model import Model
from ..render.features import feature_map_grid, filter_grid, mask_panel
from ..render.heatmap import save_png
from ..tasks.inputs import as_images
from .common import add_model_options, model_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("filters", help="a conv layer's filters (weights) as a tile grid")
    p.add_argument("--layer", help="Conv2d layer (default: the first one)")
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


def _stem(image: str) -> str:
    return image.split(":", 1)[1] if image.startswith("sample:") else Path(image).stem


def _images(model: Model, source: str):
    """(pixels (1,3,H,W) in [0,1] as the model sees them, normalized model input)."""
    pixels = model.resize(as_images(source)).to(model.device)
    return pixels, model.normalize(pixels)


def run_filters(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    ft = filter_tiles(model, args.layer, view=args.view, sort=args.sort, normalize=args.normalize,
                      max_filters=args.max, page=args.page)
    k = tuple(ft.tiles.shape[-2:])
    shown = len(ft.filter_captions)
    page = f", page {ft.page + 1}/{ft.pages}" if ft.pages > 1 else ""
    title = (f"{model.name} {ft.layer}: {shown} of {ft.total_filters} filters{page}, {ft.view} "
             f"view, {k[0]}x{k[1]} kernels (one square per weight), {args.normalize} per filter; "
             "|w| = L2 norm")
    picture = filter_grid(ft.tiles, ft.filter_captions, per_filter=ft.per_filter, title=title)
    out = save_png(picture, args.out or f"filters_{ft.layer}.png")
    if args.json:
        print_json({"layer": ft.layer, "view": ft.view, "kernel": list(k), "png": str(out),
                    "filters": ft.filters[::ft.per_filter].tolist(),
                    "total_filters": ft.total_filters, "page": ft.page, "pages": ft.pages})
    else:
        print(f"{title}: {out}")
    return 0


def run_featuremaps(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    pixels, x = _images(model, args.image)
    fm = feature_maps(model, x, args.layer, sort=args.sort, top=args.top)
    h, w = fm.maps.shape[-2:]
    order = f"top {len(fm.channels)} by {args.sort}" if args.sort != "none" else \
        f"first {len(fm.channels)}"
    scale = "each map on its own colour scale" if args.scale == "channel" else "one colour scale"
    title = (f"{fm.layer} on {args.image}: {order} of {fm.total_channels} channels "
             f"({h}x{w}, {scale})")
    picture = feature_map_grid(fm.maps[0], fm.captions(0), scale=args.scale, title=title,
                               reference=pixels[0], reference_caption=args.image)
    out = save_png(picture, args.out or f"{_stem(args.image)}_featuremaps_{fm.layer}.png")
    if args.json:
        print_json({"layer": fm.layer, "image": args.image, "png": str(out),
                    "shape": [fm.total_channels, h, w],
                    "channels": [{"channel": c, "mean": round(m, 4), "max": round(mx, 4)}
                                 for c, m, mx in zip(fm.channels.tolist(), fm.mean[0].tolist(),
                                                     fm.max[0].tolist())]})
    else:
        print(f"{title}: {out}")
    return 0


def run_mask(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    pixels, x = _images(model, args.image)
    am = activation_mask(model, x, args.layer, args.channel, quantile=args.quantile,
                         threshold=args.threshold)
    t, frac = float(am.threshold[0]), float(am.fraction[0])
    rule = (f"top {100 * (1 - am.quantile):.3g}% of pixels" if am.quantile is not None
            else f"activation >= {t:.3g}")
    h, w = am.raw.shape[-2:]
    title = f"{am.layer} channel {am.channel} on {args.image}: {rule}"
    captions = ("image", f"activation ({h}x{w}, max {float(am.raw.max()):.2f})",
                f"mask: >= {t:.2f}, {100 * frac:.2f}% of pixels")
    picture = mask_panel(pixels[0], am.activation[0], am.mask[0], captions=captions, title=title)
    out = save_png(picture, args.out or f"{_stem(args.image)}_mask_{am.layer}_c{am.channel}.png")
    if args.json:
        print_json({"layer": am.layer, "channel": am.channel, "image": args.image,
                    "quantile": am.quantile, "threshold": t, "fraction": frac, "png": str(out)})
    else:
        print(f"{title} (threshold {t:.3g}, {100 * frac:.2f}% of pixels): {out}")
    return 0
