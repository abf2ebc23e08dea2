"""Timing helpers shared by every benchmark: warm-up, repeats, median, peak memory."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Measurement:
    name: str
    seconds: float  # median wall time of one call
    images: int  # images processed per call
    peak_mb: float | None = None

    @property
    def per_image_ms(self) -> float:
        return 1000 * self.seconds / self.images


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, fn: Callable[[], object], *, images: int, device: torch.device,
            repeats: int = 5, warmup: int = 2) -> Measurement:
    """Median time of ``fn()`` over ``repeats`` runs after ``warmup`` runs.

    Peak memory is the CUDA allocator's peak above what was allocated before (GPU only: on CPU
    the process's resident set cannot tell one call's peak from an earlier one's, so CPU peaks
    are measured in a fresh process where a benchmark needs them).
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    peak = None
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return Measurement(name, statistics.median(times), images, peak)


def print_table(rows: list[Measurement], floor: Measurement | None = None) -> None:
    header = f"{'benchmark':<44} {'ms/call':>10} {'ms/image':>10} {'peak MB':>9}"
    if floor is not None:
        header += f" {'x floor':>8}"
    print(header)
    for r in rows:
        peak = f"{r.peak_mb:9.0f}" if r.peak_mb is not None else f"{'-':>9}"
        line = f"{r.name:<44} {1000 * r.seconds:10.1f} {r.per_image_ms:10.2f} {peak}"
        if floor is not None:
            line += f" {r.per_image_ms / floor.per_image_ms:8.2f}"
        print(line)


def measure_alternating(fns: list[Callable[[], object]], *, images: int, device: torch.device,
                        repeats: int = 5) -> list[Measurement]:
    """Median times of several functions timed in turns (a, b, a, b, ...) after one warm-up each.

    Timing in turns exposes both to the same machine noise, which on shared VMs drifts by tens
    of percent between minutes; the ratio of the medians is then a fair comparison.
    """
    for fn in fns:
        fn()
    _sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            _sync(device)
            record.append(time.perf_counter() - start)
    return [Measurement(f"fn{i}", statistics.median(t), images) for i, t in enumerate(times)]
