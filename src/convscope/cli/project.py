"""``convscope project``: a 2-D map (t-SNE, UMAP or PCA) of a dataset's embeddings, as a PNG.

The embeddings come from an atlas written by ``convscope scan`` (``--atlas DIR``), or are
computed here in one pass over a dataset (``--dataset SPEC --model M --layer L``): spatial mean
of the layer's activation per image, with the model's predictions and small thumbnails. Images
that cannot be read (or were skipped by the scan) are left out and counted. The leave-one-out
kNN label accuracy in the map is printed when labels exist: how well the map keeps the classes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..methods.dataset.projection import PROJECTIONS
from ..render import save_png
from ..tasks.project import Points, atlas_points, dataset_points, embedding_map
from .common import add_model_options, model_from_args, print_json
from .options import parse_options
from .progress import progress_bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("project", help="2-D map (t-SNE / UMAP / PCA) of a dataset's embeddings")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--atlas", metavar="DIR", help="atlas folder written by `convscope scan`")
    src.add_argument("--dataset", metavar="SPEC", help="mnist5k or an image folder: embed it here")
    p.add_argument("--out", required=True, metavar="PNG", help="picture to write")
    p.add_argument("--method", choices=PROJECTIONS, default="tsne", help="projection (default tsne)")
    p.add_argument("--color", choices=("label", "prediction"), default="label",
                   help="colour points by true label or by the model's prediction")
    p.add_argument("--layer", help="layer to map (atlas: one it holds, default its first, auto "
                                   "its last; dataset: any layer, default auto)")
    p.add_argument("--limit", type=int, metavar="N", help="dataset: use N images evenly spread over it")
    p.add_argument("--batch-size", type=int, default=256, metavar="B", help="dataset: images per forward")
    p.add_argument("--thumbnails", type=int, default=150, metavar="N", help="thumbnails drawn (0: none)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the projection (default 0)")
    p.add_argument("--3d-json", dest="json3d", metavar="FILE",
                   help="also write a 3-D projection of the same points as JSON")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="projection option, e.g. -o perplexity=50 or -o n_neighbors=30")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    add_model_options(p)
    p.set_defaults(func=run_project)


def run_project(args: argparse.Namespace) -> int:
    options = parse_options(args.option)
    if args.atlas:
        points = atlas_points(args.atlas, args.layer)
    else:
        model = model_from_args(args)
        with progress_bar(1, "embed") as progress:
            points = dataset_points(model, args.dataset, args.layer or "auto", limit=args.limit,
                                    batch_size=args.batch_size, progress=progress)
    made = embedding_map(points, args.method, seed=args.seed, **options)
    picture = made.picture(args.color, max_thumbnails=args.thumbnails)
    out = save_png(picture, args.out)
    knn = made.knn_accuracy
    summary = {"out": str(out), "method": args.method, "layer": points.layer,
               "points": len(points.sources), "skipped": points.skipped,
               "knn_accuracy": None if knn is None else round(knn, 4),
               "projection_seconds": round(made.seconds, 3)}
    if args.json3d:
        summary["json3d"] = str(_write_3d(args, points, options))
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {out}: {made.headline()}")
    return 0


def _write_3d(args: argparse.Namespace, points: Points, options: dict) -> Path:
    made = embedding_map(points, args.method, dims=3, seed=args.seed, **options)
    path = Path(args.json3d)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"method": args.method, "layer": points.layer,
                                "class_names": points.class_names, "points": made.rows()}))
    return path
