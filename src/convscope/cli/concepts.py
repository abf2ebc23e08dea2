"""``convscope concepts IMAGES... --k K``: discover a layer's concepts without labels.

Factorizes the layer's activations over the images (or a dataset: a folder or ``mnist5k``) into
``k`` concepts (DFF / CRAFT) and writes ``gallery.png`` (a row per concept: heatmaps on its best
images, then its top patches), ``concepts.json`` and ``index.html`` into ``--out``.
"""

from __future__ import annotations

import argparse

from ..model.targets import parse_target
from ..tasks.concepts import concepts
from .common import add_model_options, model_from_args, print_json
from .options import add_json, add_target
from .progress import progress_bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("concepts", help="discover a layer's concepts (NMF of its activations) with "
                                        "heatmaps, top patches and importances")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, sample:NAME, or one dataset (a folder or mnist5k)")
    p.add_argument("--layer", default="auto", help="a convolutional layer (default auto)")
    p.add_argument("--k", type=int, default=6, help="number of concepts (default 6)")
    add_target(p)
    p.add_argument("--importance", choices=("sobol", "gradient"), default="sobol",
                   help="CRAFT's Sobol total indices (default) or the gradient estimate")
    p.add_argument("--label", type=int, metavar="C", help="use only the dataset's images of class C")
    p.add_argument("--max-images", type=int, default=200, metavar="N",
                   help="most images taken from a dataset (seeded sample, default 200)")
    p.add_argument("--patches", type=int, default=6, metavar="P", help="top patches per concept")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and the Sobol design")
    p.add_argument("--out", default="concepts", metavar="DIR", help="output folder (default concepts)")
    add_json(p)
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    source = args.images[0] if len(args.images) == 1 else args.images
    with progress_bar(0, "concepts") as progress:
        found = concepts(model, source, layer=args.layer, k=args.k, target=parse_target(args.target),
                         importance=args.importance, label=args.label, max_images=args.max_images,
                         patches=args.patches, seed=args.seed, progress=progress)
    paths = found.save(args.out)
    if args.json:
        print_json({**found.to_dict(), "files": {k: str(v) for k, v in paths.items()}})
    else:
        for j in range(found.k):
            print(f"concept {j}: {found.importance} {float(found.importances[j]):.3g}")
        print(f"{found.k} concepts of {found.layer} ({len(found.sources)} images): {paths['png']}, "
              f"{paths['json']}, {paths['html']}")
    return 0
