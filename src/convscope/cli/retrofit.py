"""``convscope cam-retrofit``: make any CNN CAM-ready by fitting a GAP + linear head on a layer.

The head is fitted on a labelled image folder (one subfolder per class), its held-out accuracy
is printed next to the original model's, and it is written as a small file that
``--cam-head FILE`` (on every command that takes ``--model``) puts back on the same model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..tasks.explain import explain
from ..tasks.retrofit import retrofit_cam, save_cam_head
from .common import add_model_options, model_from_args, print_json
from .progress import progress_bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cam-retrofit", help="fit a GAP + linear head so CAM works on any CNN",
                       description="Fit a global-average-pooling + linear head on a layer of a "
                                   "frozen model from a labelled folder (one subfolder per class), "
                                   "report its accuracy beside the original's, save the head.")
    p.add_argument("folder", help="image folder with one subfolder of images per class")
    p.add_argument("--layer", default="auto", help="layer to pool (default auto: the last spatial map)")
    p.add_argument("--steps", type=int, default=200, help="training steps of the head (default 200)")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="fraction of each class held out to measure accuracy (default 0.2)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/held-out split (default 0)")
    p.add_argument("--out", default="cam_head.pt", help="head file to write (default cam_head.pt)")
    p.add_argument("--explain", nargs="+", metavar="IMAGE",
                   help="also write the CAM of these images with the new head")
    p.add_argument("--out-dir", default=".", help="folder for the --explain pictures (default .)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    add_model_options(p)
    p.set_defaults(func=run_retrofit)


def run_retrofit(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    with progress_bar(1, "cam-retrofit") as progress:
        result = retrofit_cam(model, args.folder, layer=args.layer, steps=args.steps,
                              holdout=args.holdout, batch_size=args.batch_size, seed=args.seed,
                              progress=progress)
    head = save_cam_head(result, args.out)
    pictures: list[str] = []
    if args.explain:
        maps = explain(result.model, args.explain, method="cam")
        out_dir = Path(args.out_dir)
        for source, path in zip(args.explain, maps.save(out_dir / "cam.png")):
            final = out_dir / f"{Path(str(source)).stem.replace(':', '_')}_cam.png"
            path.replace(final)
            pictures.append(str(final))
    summary = {"layer": result.source_layer, "classes": result.classes, "accuracy": result.accuracy,
               "original_accuracy": result.original_accuracy, "train": result.n_train,
               "held_out": result.n_test, "head": str(head), "pictures": pictures}
    if args.json:
        print_json(summary)
        return 0
    original = ("n/a (class names are not the model's labels)" if result.original_accuracy is None
                else f"{result.original_accuracy:.1%}")
    print(f"head on {result.source_layer}: held-out accuracy {result.accuracy:.1%} "
          f"({result.n_test} images); original model {original}")
    print(f"wrote {head}" + "".join(f"\nwrote {p}" for p in pictures))
    return 0
