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


@dataclass
class Turns:
    """Seconds of several calls timed in alternating turns: ``first[i]`` the first (warm-up)
    call of ``fns[i]``, ``times[i]`` its timed calls, one per turn."""

    first: list[float]
    times: list[list[float]]


def alternate(fns: list[Callable[[], object]], *, device: torch.device, repeats: int = 5,
              prepare: list[Callable[[], object] | None] | None = None) -> Turns:
    """Time several functions in turns (a, b, a, b, ...) after one warm-up call each.

    Timing in turns exposes both to the same machine noise, which on shared VMs drifts by tens
    of percent between minutes; the ratio of the medians is then a fair comparison. The warm-up
    calls are timed too: in a fresh process the first one is the first call a user pays.
    ``prepare[i]`` (emptying a cache, say) runs untimed before every call of ``fns[i]``.
    """
    prepares = prepare or [None] * len(fns)

    def timed(i: int) -> float:
        if prepares[i] is not None:
            prepares[i]()  # type: ignore[misc]
        start = time.perf_counter()
        fns[i]()
        _sync(device)
        return time.perf_counter() - start

    _sync(device)
    first = [timed(i) for i in range(len(fns))]
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, record in enumerate(times):
            record.append(timed(i))
    return Turns(first, times)


def measure_alternating(fns: list[Callable[[], object]], *, images: int, device: torch.device,
                        repeats: int = 5) -> list[Measurement]:
    """Median times of several functions timed in turns (:func:`alternate`)."""
    turns = alternate(fns, device=device, repeats=repeats)
    return [Measurement(f"fn{i}", statistics.median(t), images) for i, t in enumerate(turns.times)]
