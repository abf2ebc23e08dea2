"""``convscope leaderboard DATASET``: which attribution method to trust on this model and data.

Runs every chosen method against every chosen metric over the dataset and writes, into
``--out``, ``leaderboard.json``, ``.csv``, ``.html`` (with the plot) and ``.png``: means with
bootstrap 95% intervals, a rank per metric, the time per method and which methods this many
images cannot tell apart. Interrupted, the same command continues from the last committed chunk
(``--out/checkpoint.json``). Under ``torchrun --nproc_per_node=N convscope leaderboard ...`` the
processes share the images and rank 0 writes and prints.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..methods.evaluation.metrics import GROUPS, metric_names
from ..model.targets import parse_target
from ..tasks.leaderboard import DEFAULT_BATCH, leaderboard
from .common import add_model_options, model_from_args, print_json, rank_device
from .options import add_json, add_layer, add_method_options, parse_options
from .output import aligned
from .progress import progress_bar

CHECKPOINT = "checkpoint.json"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="rank attribution methods by metrics over a dataset, "
                                           "with confidence intervals (resumable)")
    p.add_argument("dataset", metavar="DATASET",
                   help="image folder (subfolders = classes), mnist5k, or samples (the sample photos)")
    p.add_argument("--methods", default="all", metavar="NAMES", help="comma-separated methods or all")
    p.add_argument("--metrics", metavar="NAMES",
                   help=f"metrics or groups ({', '.join(GROUPS)}), comma-separated, or all (default: "
                        f"faithfulness, and localization with --regions); known: {', '.join(metric_names())}")
    p.add_argument("--target", default="label",
                   help="label (the dataset's class, default), top1, a class index or a label")
    p.add_argument("--images", type=int, metavar="N", help="score N images spread over the dataset")
    p.add_argument("--regions", metavar="CSV",
                   help="boxes or masks per image: image,top,left,bottom,right[,mask] (see the README)")
    add_layer(p)
    p.add_argument("--steps", type=int, default=50, help="deletion/insertion steps (default 50)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help=f"images per batch (default {DEFAULT_BATCH})")
    p.add_argument("--chunk-size", type=int, metavar="M",
                   help="images per committed chunk: the most a kill loses (default 4 batches)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--out", default="leaderboard", metavar="DIR",
                   help="folder for the results and the checkpoint (default ./leaderboard)")
    add_method_options(p)
    add_json(p, "print the JSON summary instead of the table")
    add_model_options(p)
    p.set_defaults(func=run_leaderboard)


def run_leaderboard(args: argparse.Namespace) -> int:
    model = model_from_args(args, device=rank_device(args.device))
    out = Path(args.out)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    start = time.perf_counter()
    with progress_bar(0, "leaderboard") as progress:
        board = leaderboard(model, args.dataset, args.methods, args.metrics,
                            target=parse_target(args.target), images=args.images, regions=args.regions,
                            layer=args.layer, steps=args.steps, batch_size=args.batch_size,
                            chunk_size=args.chunk_size, checkpoint=out / CHECKPOINT,
                            resamples=args.resamples, seed=args.seed,
                            options=parse_options(args.option), progress=progress)
    seconds = time.perf_counter() - start
    if not rank0:
        return 0
    paths = board.save(out)
    if args.json:
        print_json({**board.summary(), "seconds_total": round(seconds, 2),
                    "files": {k: str(v) for k, v in paths.items()}})
        return 0
    header, rows = board.table()
    print("\n".join(aligned([header, *rows])))
    print()
    print("\n".join([*board.statements(), board.rule]))
    print(f"{board.meta}; {seconds:.1f}s this run; wrote {paths['html']} (and .json, .csv, .png)")
    return 0
