"""``convscope top`` and ``convscope neighbors``: look at a finished atlas.

``top`` shows what a channel responds to: its top-k images cropped to the receptive field of
the unit where each peaked (``--full``: whole images with that field outlined). ``neighbors``
lists the atlas images nearest to a query image or dataset index in a layer's embedding space.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.atlas import Atlas
from ..errors import BadArgument
from ..render.grid import image_grid
from ..render.heatmap import draw_boxes, save_png
from ..tasks.atlas import atlas_model, find_neighbors, thumbnails_as_tensors, top_patches
from ..tasks.inputs import as_images
from .common import print_json

if TYPE_CHECKING:
    from PIL import Image
    from torch import Tensor


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("top", help="a channel's top images from an atlas, cropped to the "
                                   "receptive field of the peak unit")
    p.add_argument("--atlas", required=True, metavar="DIR", help="atlas folder from `convscope scan`")
    p.add_argument("--layer", required=True, help="a layer the atlas scanned (auto: its last)")
    p.add_argument("--channel", type=int, required=True, metavar="C", help="channel index")
    p.add_argument("--k", type=int, metavar="K", help="images to show (default: all stored)")
    p.add_argument("--full", action="store_true", help="whole images with the field outlined")
    p.add_argument("--relevance", action="store_true",
                   help="the images where the channel carries the most relevance for the predicted "
                        "class (RelMax; needs an atlas scanned with --relevance)")
    p.add_argument("--model", help="the atlas's model, when it is not a zoo name (default: its name)")
    p.add_argument("--out", help="PNG to write (default top_LAYER_cC.png)")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(func=run_top)

    p = sub.add_parser("neighbors", help="nearest atlas images to an image or a dataset index")
    p.add_argument("image", nargs="?", metavar="IMAGE", help="query image file (or sample:NAME)")
    p.add_argument("--index", type=int, metavar="I", help="query by the atlas image with this index")
    p.add_argument("--atlas", required=True, metavar="DIR", help="atlas folder from `convscope scan`")
    p.add_argument("--layer", help="embedding layer (default and auto: the atlas's last layer)")
    p.add_argument("--k", type=int, default=8, metavar="K", help="neighbours (default 8)")
    p.add_argument("--metric", default="cosine", choices=["cosine", "l2"], help="default cosine")
    p.add_argument("--model", help="the atlas's model, when it is not a zoo name (default: its name)")
    p.add_argument("--out", help="PNG: the query and its neighbours with distances")
    p.add_argument("--json", action="store_true", help="print the neighbours as JSON")
    p.set_defaults(func=run_neighbors)


def _short(source: str) -> str:
    return Path(source).name if "/" in source or "\\" in source else source


def run_top(args: argparse.Namespace) -> int:
    atlas = Atlas.open(args.atlas)
    model = atlas_model(atlas, args.model)
    layer = atlas.layer_named(args.layer)
    patches = top_patches(atlas, model, layer, args.channel, args.k,
                          kind="relevance" if args.relevance else "activation")
    if not patches:
        raise BadArgument(f"channel {args.channel} of {layer!r} has no scanned images")
    captions = [f"#{p.record.rank + 1} {p.record.value:.3g} {_short(p.record.source)}" for p in patches]
    tiles: list[Image.Image] | list[Tensor]
    if args.full:
        tiles = [draw_boxes(p.image, [[p.box.top, p.box.left, p.box.bottom, p.box.right]],
                            width=max(1, min(model.input_size) // 64)) for p in patches]
    else:
        tiles = [p.crop for p in patches]
    box = patches[0].box
    what = "whole images, field outlined" if args.full else f"fields up to {box.height}x{box.width} px"
    by = " by relevance" if args.relevance else ""
    title = f"{atlas.model_name} {layer} channel {args.channel}: top {len(patches)}{by} ({what})"
    grid = image_grid(tiles, captions=captions, upscale="auto", tile_size=96, title=title,
                      ncols=min(8, len(tiles)))
    out = save_png(grid, args.out or f"top_{layer}_c{args.channel}.png")
    if args.json:
        print_json({"layer": layer, "channel": args.channel, "png": str(out),
                    "top": [{"rank": p.record.rank, "index": p.record.index, "value": p.record.value,
                             "y": p.record.y, "x": p.record.x, "source": p.record.source,
                             "box": [p.box.top, p.box.left, p.box.bottom, p.box.right]}
                            for p in patches]})
    else:
        print(f"{title}: {out}")
    return 0


def _label_fields(label: int, names: list[str] | None) -> dict[str, int | str | None]:
    """The dataset label of an atlas image: index and name (both None for unlabelled images)."""
    if label < 0:
        return {"label_index": None, "label": None}
    name = names[label] if names is not None and label < len(names) else str(label)
    return {"label_index": int(label), "label": name}


def run_neighbors(args: argparse.Namespace) -> int:
    if (args.image is None) == (args.index is None):
        raise BadArgument("give a query IMAGE or --index I (one of them)")
    atlas = Atlas.open(args.atlas)
    layer = atlas.layer_named(args.layer or atlas.layers[-1])
    model = None
    if args.index is not None:
        found = find_neighbors(atlas, args.index, layer=layer, k=args.k, metric=args.metric)
        query_name = atlas.sources()[args.index]
    else:
        model = atlas_model(atlas, args.model)
        image = as_images(args.image)[0]
        found = find_neighbors(atlas, image, model=model, layer=layer, k=args.k, metric=args.metric)
        query_name = args.image
    if args.out:
        if args.index is not None:
            query = thumbnails_as_tensors(atlas, [args.index])[0]
        else:
            assert model is not None
            query = model.resize([image])[0]
        tiles = [query, *thumbnails_as_tensors(atlas, [n.index for n in found])]
        captions = [f"query {_short(query_name)}",
                    *(f"{n.distance:.3f} {_short(n.source)}" for n in found)]
        grid = image_grid(tiles, captions=captions, upscale="auto", tile_size=96,
                          ncols=min(9, len(tiles)),
                          title=f"nearest to {_short(query_name)} at {layer} ({args.metric} distance)")
        save_png(grid, args.out)
    if args.json:
        labels, names = atlas.labels(), atlas.class_names
        print_json({"query": query_name, "layer": layer, "metric": args.metric,
                    "png": args.out, "neighbors": [{"rank": n.rank, "index": n.index, "source": n.source,
                                                     "distance": n.distance,
                                                     **_label_fields(labels[n.index], names)}
                                                    for n in found]})
    else:
        for n in found:
            print(f"{n.rank + 1:3d}  {n.distance:.4f}  {n.source}")
        if args.out:
            print(f"picture: {args.out}")
    return 0
