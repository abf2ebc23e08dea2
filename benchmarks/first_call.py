"""First call in a fresh process beside the same call warmed, for the forward-only methods.

    python -m benchmarks.first_call [--methods occlusion rise lime scorecam] [--processes 3]

Each turn starts a fresh Python process (glibc's malloc, no jemalloc: the allocator most users
have) that times ``explain()`` on the embedded model at 224x224 three ways: its first call, the
same call again (warmed), and a first call made after one larger-batch forward (which raises
glibc's dynamic mmap threshold: issue 23 saw 1.7 s fresh against 0.8 s after it). Methods take
turns across processes, so machine noise falls on all of them alike. :func:`first_call_rows`
returns the medians for other benchmark scripts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

OPTIONS: dict[str, dict[str, Any]] = {
    "occlusion": {"window": 32, "stride": 16},
    "rise": {"masks": 512},
    "lime": {"samples": 500},
    "scorecam": {},
}


def _child(method: str, after_batch: bool) -> dict[str, float]:
    """Run in the fresh process: seconds of the first and of the second call."""
    import time

    import torch

    from convscope import explain, load_model

    model = load_model("efficientnet_lite0")
    x = model.normalize(torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    if after_batch:
        with torch.no_grad():
            model(x.expand(16, -1, -1, -1).clone())
    times = []
    for _ in range(2):
        start = time.perf_counter()
        explain(model, x, method=method, **OPTIONS[method])
        times.append(time.perf_counter() - start)
    return {"first": times[0], "warmed": times[1]}


def _fresh(method: str, after_batch: bool) -> dict[str, float]:
    argv = [sys.executable, "-m", "benchmarks.first_call", "--child", method]
    out = subprocess.run(argv + (["--after-batch"] if after_batch else []), check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def first_call_rows(methods: list[str], processes: int = 3) -> list[dict[str, Any]]:
    """Per method, medians over ``processes`` fresh processes (seconds): ``first``, ``warmed``
    and ``first_after_batch``."""
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    for _ in range(processes):
        for method in methods:  # alternating turns
            plain, batch = _fresh(method, False), _fresh(method, True)
            runs[method].append({**plain, "first_after_batch": batch["first"]})
    return [{"method": m, **{k: statistics.median(r[k] for r in runs[m])
                             for k in ("first", "warmed", "first_after_batch")}}
            for m in methods]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--child", choices=list(OPTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--after-batch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.after_batch)))
        return
    print(f"{'method':<10} {'first s':>9} {'warmed s':>9} {'first after batch s':>20}")
    for row in first_call_rows(args.methods, args.processes):
        print(f"{row['method']:<10} {row['first']:9.2f} {row['warmed']:9.2f} "
              f"{row['first_after_batch']:20.2f}", flush=True)


if __name__ == "__main__":
    main()
