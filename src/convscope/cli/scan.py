"""``convscope scan DATASET --atlas DIR``: one pass over a dataset into a resumable atlas.

Run it again with the same arguments after an interruption and it continues where the last
committed chunk ended. Under ``torchrun --nproc_per_node=N convscope scan ...`` the processes
share the work (gloo on CPU, NCCL on GPU: each process uses ``cuda:LOCAL_RANK``) and rank 0
writes the atlas and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

from tqdm import tqdm

from ..data.atlas import Atlas
from ..tasks.scan import DEFAULT_CHUNK, scan_dataset
from .common import add_model_options, model_from_args, print_json, rank_device

SHOWN_SKIPPED = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="scan a dataset: top images per channel, embeddings, "
                                    "predictions -> an atlas folder (resumable)")
    p.add_argument("dataset", metavar="DATASET", help="image folder (subfolders = classes) or mnist5k")
    p.add_argument("--atlas", required=True, metavar="DIR", help="atlas folder to write or resume")
    p.add_argument("--layers", default="auto", metavar="L1,L2",
                   help="comma-separated layer names (default auto: the last conv feature map)")
    p.add_argument("--k", type=int, default=16, help="top images kept per channel (default 16)")
    p.add_argument("--batch-size", type=int, metavar="B",
                   help="images per forward pass (default on CPU: 16 at 224x224, more for smaller "
                        "inputs, up to 128; 128 on GPU)")
    p.add_argument("--chunk-size", type=int, metavar="M",
                   help="images per committed chunk: the most a kill can lose (default: 8 batches, "
                        f"at least {DEFAULT_CHUNK})")
    p.add_argument("--relevance", action="store_true",
                   help="also record each channel's relevance exemplars (RelMax: LRP relevance for "
                        "the predicted class); `convscope top --relevance` shows them")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    add_model_options(p)
    p.set_defaults(func=run_scan)


def run_scan(args: argparse.Namespace) -> int:
    model = model_from_args(args, device=rank_device(args.device))
    layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    rank0 = int(os.environ.get("RANK", "0")) == 0
    bar = tqdm(total=0, desc="scan", unit="img", file=sys.stderr, leave=False,
               disable=not (rank0 and sys.stderr.isatty()))

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    before = _scanned(args.atlas)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="scan skipped")  # listed below instead
            warnings.filterwarnings("ignore", message="skipped .* non-image")
            atlas = scan_dataset(model, args.dataset, args.atlas, layers=layers or "auto", k=args.k,
                                 batch_size=args.batch_size, chunk_size=args.chunk_size,
                                 progress=progress, relevance=args.relevance)
    finally:
        bar.close()
    if rank0:
        _report(atlas, args, (atlas.size - before) / max(time.perf_counter() - start, 1e-9))
    return 0


def _scanned(path: str) -> int:
    """Images an earlier, interrupted run already committed (0 for a new atlas)."""
    try:
        return Atlas.open(path, partial=True).scanned
    except Exception:  # no atlas yet (or not one): the scan itself reports what is wrong
        return 0


def _report(atlas: Atlas, args: argparse.Namespace, rate: float) -> None:
    skipped = atlas.skipped()
    if args.json:
        print_json({"atlas": str(atlas.path), "images": atlas.size, "scanned": atlas.size - len(skipped),
                    "skipped": [{"index": i, "source": s, "reason": r} for i, s, r in skipped],
                    "layers": atlas.layers, "channels": atlas.channels, "k": atlas.k,
                    "images_per_second": round(rate, 2)})
        return
    print(f"atlas {atlas.path}: {atlas.size - len(skipped)} of {atlas.size} images scanned "
          f"({rate:.1f} img/s this run), layers {', '.join(atlas.layers)}, top {atlas.k} per channel")
    if skipped:
        print(f"skipped {len(skipped)} unreadable item(s):")
        for _, source, reason in skipped[:SHOWN_SKIPPED]:
            print(f"  {source}: {reason}")
        if len(skipped) > SHOWN_SKIPPED:
            print(f"  ... and {len(skipped) - SHOWN_SKIPPED} more (see --json)")
