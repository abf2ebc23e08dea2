"""Attribution methods against the floor and against Captum, on the embedded model.

Each row: our method and, where Captum has the same method, Captum with the same settings on
the same inputs. Ratios: ``x floor`` = time / forward+backward time at the same batch size;
``x captum`` = our time / Captum's time (below 1 is faster).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from convscope.methods.registry import build_method
from convscope.model import Model, guarded

from .timing import Measurement, measure


@dataclass
class Case:
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    captum: Callable[[Model, str], Callable[[torch.Tensor, torch.Tensor], Any]] | None = None
    layer: bool = False


def _captum_cases() -> list[Case]:
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
        Case("smoothgrad", {"samples": 25},
             c(lambda m, _l: lambda x, t: attr.NoiseTunnel(attr.Saliency(m)).attribute(
                 x, target=t, nt_type="smoothgrad", nt_samples=25, stdevs=0.3,
                 nt_samples_batch_size=8))),
        Case("integrated_gradients", {"steps": 50},
             c(lambda m, _l: lambda x, t: attr.IntegratedGradients(m).attribute(
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


def attribution_rows(model: Model, device: torch.device, floors: dict[str, Measurement],
                     batches: tuple[int, ...] = (1, 8), repeats: int = 3) -> None:
    """Print one table per batch size."""
    from convscope.methods.registry import method_names

    registered = set(method_names())
    gen = torch.Generator().manual_seed(0)
    for batch in batches:
        floor = floors.get(f"forward+backward b{batch}")
        if floor is None:
            floor = measure("floor", lambda: None, images=batch, device=device)
        x = model.normalize(torch.rand(batch, 3, *model.input_size, generator=gen)).to(device)
        with guarded(model), torch.no_grad():
            target = model(x).argmax(1)
        print(f"\n== attribution, batch {batch} (floor: forward+backward "
              f"{1000 * floor.seconds:.0f} ms)")
        print(f"{'method':<22} {'ours ms':>9} {'x floor':>8} {'captum ms':>10} {'x captum':>9}")
        for case in _captum_cases():
            if case.method not in registered:
                print(f"{case.method:<22} {'(not registered)':>9}")
                continue
            layer = "auto" if case.layer else None
            ours = build_method(case.method, model, layer, **case.options)
            mine = measure(case.method, lambda o=ours, x=x, t=target: o(x, t), images=batch, device=device,
                           repeats=repeats, warmup=1)
            line = (f"{case.method:<22} {1000 * mine.seconds:9.1f} "
                    f"{mine.seconds / floor.seconds:8.2f}")
            if case.captum is not None:
                fn = case.captum(model, getattr(ours, "layer", None) or "")
                with guarded(model):
                    ref = measure("captum", lambda f=fn, x=x, t=target: f(x, t), images=batch,
                                  device=device, repeats=repeats, warmup=1)
                line += f" {1000 * ref.seconds:10.1f} {mine.seconds / ref.seconds:9.2f}"
            print(line)


_PEAK_SCRIPT = """
import json, resource, sys, torch
from convscope.model import load_model, guarded
from convscope.methods.registry import build_method
which, batch = sys.argv[1], int(sys.argv[2])
model = load_model("efficientnet_lite0")
x = model.normalize(torch.rand(batch, 3, 224, 224))
with guarded(model), torch.no_grad():
    target = model(x).argmax(1)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if which == "ours":
    build_method("integrated_gradients", model, None, steps=50)(x, target)
else:
    from captum.attr import IntegratedGradients
    with guarded(model):
        IntegratedGradients(model).attribute(x, torch.full_like(x, -1.0), target=target, n_steps=50)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mb": (peak - base) / 1024}))
"""


def ig_peak_memory(batch: int = 8, include_captum: bool = True) -> None:
    """Peak resident memory above the loaded model for 50-step IG, each in a fresh process."""
    print(f"\n== integrated gradients, 50 steps, batch {batch}: peak memory above the model")
    for which in ("ours", "captum") if include_captum else ("ours",):
        proc = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, which, str(batch)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{which:<8} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        peak = json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]
        print(f"{which:<8} {peak / 1024:6.2f} GB")
