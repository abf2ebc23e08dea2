"""Attribution methods against the floor and against Captum, on the embedded model.

Each row: our method and, where Captum has the same method, Captum with the same settings on
the same inputs. Ratios: ``x floor`` = time / forward+backward time at the same batch size;
``x captum`` = our time / Captum's time (below 1 is faster).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from convscope.methods.registry import build_method
from convscope.model import Model, guarded

from .floor import forward_backward
from .timing import measure_alternating


@dataclass
class Case:
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    captum: Callable[[Model, str], Callable[[torch.Tensor, torch.Tensor], Any]] | None = None
    layer: bool = False
    passes: int = 1
    """Forward+backward passes the method needs per image: the floor is multiplied by it."""
    captum_default: Callable[[Model, str], Callable[[torch.Tensor, torch.Tensor], Any]] | None = None
    """Captum at its own defaults, where they differ from the chunked setting (memory only)."""


def captum_cases() -> list[Case]:
    try:
        from captum import attr
    except ImportError:
        attr = None

    def c(build: Callable[[Model, str], Callable]) -> Callable | None:
        return build if attr is not None else None

    def layer_module(model: Model, layer: str) -> torch.nn.Module:
        return dict(model.net.named_modules())[layer]

    return [
        Case("saliency", {}, c(lambda m, _l: lambda x, t: attr.Saliency(m).attribute(x, t))),
        Case("gradient_x_input", {},
             c(lambda m, _l: lambda x, t: attr.InputXGradient(m).attribute(x, t))),
        Case("smoothgrad", {"samples": 25, "batch_size": 16},
             c(lambda m, _l: lambda x, t: attr.NoiseTunnel(attr.Saliency(m)).attribute(
                 x, target=t, nt_type="smoothgrad", nt_samples=25, stdevs=0.3,
                 nt_samples_batch_size=16)), passes=25),
        Case("integrated_gradients", {"steps": 50, "batch_size": 16, "rule": "gausslegendre"},
             c(lambda m, _l: lambda x, t: attr.IntegratedGradients(m).attribute(
                 x, torch.full_like(x, -1.0), target=t, n_steps=50, internal_batch_size=16)),
             passes=50,
             captum_default=c(lambda m, _l: lambda x, t: attr.IntegratedGradients(m).attribute(
                 x, torch.full_like(x, -1.0), target=t, n_steps=50))),
        Case("guided_backprop", {},
             c(lambda m, _l: lambda x, t: attr.GuidedBackprop(m).attribute(x, t))),
        Case("deconvnet", {}, c(lambda m, _l: lambda x, t: attr.Deconvolution(m).attribute(x, t))),
        Case("cam", {}, None, layer=True),
        Case("gradcam", {},
             c(lambda m, name: lambda x, t: attr.LayerGradCam(m, layer_module(m, name)).attribute(x, t)),
             layer=True),
        Case("gradcam_pp", {}, None, layer=True),
        Case("guided_gradcam", {},
             c(lambda m, name: lambda x, t: attr.GuidedGradCam(m, layer_module(m, name)).attribute(x, t)),
             layer=True),
    ]


def attribution_rows(model: Model, device: torch.device, batches: tuple[int, ...] = (1, 8),
                     repeats: int = 9) -> None:
    """Print one table per batch size.

    Each method is timed in turns with the bare forward+backward pass (``x floor``, per pass the
    method needs) and with Captum (``x captum``), so all three see the same machine noise.

    Captum runs with the same chunk sizes as ours (SmoothGrad and IG: 16 images a pass): at its
    default IG puts all 50 x B interpolated images in one batch (about 18 GB at batch 8), which is
    measured separately in a fresh process by :func:`ig_peak_memory`.
    """
    from convscope.methods.registry import method_names

    registered = set(method_names())
    gen = torch.Generator().manual_seed(0)
    for batch in batches:
        x = model.normalize(torch.rand(batch, 3, *model.input_size, generator=gen)).to(device)
        with guarded(model), torch.no_grad():
            target = model(x).argmax(1)
        print(f"\n== attribution, batch {batch} (x floor: time / (passes x forward+backward))")
        print(f"{'method':<22} {'passes':>6} {'ours ms':>9} {'x floor':>8} {'captum ms':>10} "
              f"{'x captum':>9}")
        for case in captum_cases():
            if case.method not in registered:
                print(f"{case.method:<22} {'(not registered)':>9}")
                continue
            layer = "auto" if case.layer else None
            ours = build_method(case.method, model, layer, **case.options)
            fns = [lambda x=x: forward_backward(model, x), lambda o=ours, x=x, t=target: o(x, t)]
            if case.captum is not None:
                ref_fn = case.captum(model, getattr(ours, "layer", None) or "")
                fns.append(lambda f=ref_fn, x=x, t=target: f(x, t))
            with guarded(model):  # Captum does not set eval mode itself; ours sets its own
                timed = measure_alternating(fns, images=batch, device=device,
                                            repeats=repeats if case.passes == 1 else 3)
            floor_now, mine = timed[0], timed[1]
            line = (f"{case.method:<22} {case.passes:6d} {1000 * mine.seconds:9.1f} "
                    f"{mine.seconds / (case.passes * floor_now.seconds):8.2f}")
            if len(timed) > 2:
                ref = timed[2]
                line += f" {1000 * ref.seconds:10.1f} {mine.seconds / ref.seconds:9.2f}"
            print(line)


def _peak(what: str, method: str, batch: int) -> str:
    """Peak MB of one call in a fresh process (benchmarks/peak.py), plain glibc malloc."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.peak", what, method, str(batch)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:]
        return "killed (out of memory?)" if proc.returncode < 0 else f"failed: {last[0] if last else ''}"
    return f"{json.loads(proc.stdout.strip().splitlines()[-1])['peak_mb']:.0f}"


def peak_memory_rows(batch: int = 8) -> None:
    """Peak memory (MB above the loaded model) of each method, the floor and Captum, batch B."""
    print(f"\n== peak memory, batch {batch}, MB above the loaded model (fresh process each)")
    print(f"{'method':<22} {'floor':>8} {'ours':>8} {'captum':>8}  captum at its defaults")
    for case in captum_cases():
        ours = _peak("ours", case.method, batch)
        floor = _peak("floor", case.method, batch)
        captum = _peak("captum", case.method, batch) if case.captum else "-"
        default = _peak("captum-default", case.method, batch) if case.captum_default else ""
        print(f"{case.method:<22} {floor:>8} {ours:>8} {captum:>8}  {default}")


PUBLIC_OPTIONS: dict[str, dict[str, Any]] = {
    "smoothgrad": {"samples": 8},
    "integrated_gradients": {"steps": 8},
    "occlusion": {"window": 56, "stride": 56},
    "rise": {"masks": 32},
    "lime": {"samples": 32},
    "scorecam": {"max_channels": 32},
}
"""Fewer samples than the methods' defaults for the many-pass methods, so that every method is
timed in minutes on a CPU; the same options go to the method object and to ``explain()``. With
their defaults the one forward ``explain()`` may add weighs even less."""


def public_rows(model: Model, device: torch.device, batches: tuple[int, ...] = (1, 8),
                repeats: int = 5, methods: list[str] | None = None) -> None:
    """The public call beside the method object and the floor, for every registered method.

    ``explain()`` is called as a user calls it (method name, ``target="top1"``, a fresh call
    each time: it loads nothing, finds the method object, resolves the target and its score,
    upsamples the map); the method object is built once and called with the same target, in
    turns with it. ``explain/method`` is the ratio of their medians; on a busy machine it swings
    by several percent either way, so ``added`` also gives what explain() spends outside the
    method within the same calls (its wall time minus the method's time it records), and
    ``1+added/method``, which that noise does not move. Both must stay at or under 1.05.
    """
    import statistics

    from convscope.methods.registry import get_method, method_names
    from convscope.tasks.explain import explain

    gen = torch.Generator().manual_seed(0)
    for batch in batches:
        x = model.normalize(torch.rand(batch, 3, *model.input_size, generator=gen)).to(device)
        print(f"\n== public call, batch {batch}: explain() beside the method object and the floor "
              "(one forward+backward)")
        print(f"{'method':<22} {'floor ms':>9} {'method ms':>10} {'explain ms':>11} "
              f"{'explain/method':>15} {'added ms':>9} {'1+added/method':>15}", flush=True)
        for name in methods or method_names():
            options = PUBLIC_OPTIONS.get(name, {})
            layer = "auto" if get_method(name).needs_layer else None
            method = build_method(name, model, layer, **options)
            inside: list[float] = []
            walls: list[float] = []

            def public(n: str = name, x: torch.Tensor = x, o: dict[str, Any] = options,
                       walls: list[float] = walls, inside: list[float] = inside) -> None:
                start = time.perf_counter()
                result = explain(model, x, method=n, **o)
                walls.append(time.perf_counter() - start)
                inside.append(result.seconds)

            fns = [lambda x=x: forward_backward(model, x), lambda m=method, x=x: m(x, "top1"), public]
            floor_now, mine, wall = measure_alternating(
                fns, images=batch, device=device, repeats=3 if name in PUBLIC_OPTIONS else repeats)
            added = statistics.median(w - i for w, i in zip(walls, inside))
            print(f"{name:<22} {1000 * floor_now.seconds:9.1f} {1000 * mine.seconds:10.1f} "
                  f"{1000 * wall.seconds:11.1f} {wall.seconds / mine.seconds:15.3f} "
                  f"{1000 * added:9.2f} {1 + added / mine.seconds:15.3f}", flush=True)


def attribution_group(model: Model, device: torch.device) -> None:
    """``--only attribution``: the public call first, then the method objects against Captum."""
    public_rows(model, device)
    attribution_rows(model, device)


CLI_METHODS = ("gradcam", "saliency", "lrp")


def cli_rows(model: Model, device: torch.device, repeats: int = 3) -> None:
    """``convscope explain`` end to end (a fresh process: Python, imports, model load, the image,
    the method, the PNG) beside ``explain()`` in a warm process and the method object alone."""
    import statistics
    import tempfile

    from convscope.data import load_image
    from convscope.methods.registry import get_method
    from convscope.tasks.explain import explain

    x = model.preprocess([load_image("sample:cat")])
    print("\n== CLI end to end, batch 1 (sample:cat): a fresh `convscope explain` process beside "
          "the warm calls")
    print(f"{'method':<22} {'cli ms':>9} {'explain ms':>11} {'method ms':>10} {'cli - explain':>14}")
    for name in CLI_METHODS:
        layer = "auto" if get_method(name).needs_layer else None
        method = build_method(name, model, layer)
        warm = measure_alternating([lambda m=method: m(x, "top1"),
                                    lambda n=name: explain(model, x, method=n)],
                                   images=1, device=device, repeats=repeats)
        times = []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(repeats):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "convscope.cli.main", "explain", "sample:cat",
                                "--method", name, "--device", device.type, "--out",
                                f"{tmp}/out.png"], check=True, capture_output=True)
                times.append(time.perf_counter() - start)
        cli = statistics.median(times)
        print(f"{name:<22} {1000 * cli:9.0f} {1000 * warm[1].seconds:11.1f} "
              f"{1000 * warm[0].seconds:10.1f} {1000 * (cli - warm[1].seconds):14.0f}")
