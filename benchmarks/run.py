"""Run every benchmark in one process and print times, peak memory and ratios to the floor.

    python -m benchmarks.run [--device cpu|cuda] [--only GROUP ...] [--memory]

On CPU it re-executes itself under jemalloc with decay off when the library is installed
(``apt-get install libjemalloc2``): glibc returns large buffers to the OS after each forward,
which made batch-32 CPU throughput nearly twice as slow on our 2-core VMs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from convscope.model import Model

JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


def reexec_with_jemalloc(module: str) -> None:
    """Restart ``python -m MODULE`` (same arguments) under jemalloc with decay off, when it is
    installed and not preloaded yet; otherwise return and go on with the current allocator."""
    if JEMALLOC.is_file() and "jemalloc" not in os.environ.get("LD_PRELOAD", ""):
        env = dict(os.environ, LD_PRELOAD=str(JEMALLOC), MALLOC_CONF=MALLOC_CONF)
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-jemalloc", action="store_true")
    parser.add_argument("--only", choices=GROUPS, nargs="+", help="run these groups only")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory of every method in fresh processes "
                             "(Captum's default IG needs ~18 GB)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu" and not args.no_jemalloc:
        reexec_with_jemalloc("benchmarks.run")

    import warnings

    from convscope.model import load_model

    warnings.filterwarnings("ignore", module="captum")  # its notes on requires_grad and hooks

    from .floor import floor_measurements
    from .timing import print_table

    allocator = "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "default malloc"
    print(f"convscope benchmarks: torch {torch.__version__}, {device}, "
          f"{torch.get_num_threads()} threads, {allocator}, {platform.processor() or platform.machine()}")
    chosen = args.only or list(GROUPS)
    if args.memory and "attribution" in chosen:
        from .attribution import peak_memory_rows

        peak_memory_rows()  # first, while this process is small: Captum's default IG needs ~18 GB
    model = load_model("efficientnet_lite0", device=device)
    floors = floor_measurements(model, device, batches=(1, 8, 32))
    print("\n== model floor (EfficientNet-Lite0, 224x224)")
    print_table(list(floors.values()))
    for group in chosen:
        if group != "floor":
            GROUPS[group](model, device)


def _group(module: str, function: str) -> Callable[[Model, torch.device], None]:
    """A benchmark group, imported when it runs (some need test-only reference libraries)."""

    def run(model: Model, device: torch.device) -> None:
        getattr(importlib.import_module(f"benchmarks.{module}"), function)(model, device)

    return run


GROUPS: dict[str, Callable[[Model, torch.device], None]] = {
    "floor": lambda model, device: None,  # always printed first: every ratio refers to it
    "attribution": _group("attribution", "attribution_group"),
    "cli": _group("attribution", "cli_rows"),
    "occlusion": _group("perturbation", "perturbation_rows"),
    "lime": _group("lime_bench", "lime_rows"),
    "deeplift": _group("deeplift_bench", "deeplift_rows"),
    "shap": _group("shap_bench", "shap_rows"),
    "lrp": _group("lrp_bench", "lrp_rows"),
    "visualize": _group("visualize_bench", "visualize_rows"),
    "synthesis": _group("synthesis_bench", "synthesis_rows"),
    "scan": _group("scan_bench", "scan_table"),
    "projection": _group("projection_bench", "projection_table"),
    "web": _group("web", "web_rows"),
    "atlas_map": _group("atlas_map", "atlas_map_table"),
}
"""Benchmark groups in the order they run; ``--only`` picks some."""

if __name__ == "__main__":
    main()
