"""Peak memory of one call, measured in a fresh process: ``python -m benchmarks.peak WHAT METHOD B``.

WHAT is ``floor`` (forward+backward), ``ours``, ``captum`` (same settings as the timing table) or
``captum-default`` (Captum's own defaults; for IG that is all 50 x B interpolated images in one
batch). Prints one JSON line: peak resident memory above the loaded model (MB) and seconds.
A fresh process is needed because a process's resident set cannot tell one call's peak from an
earlier one's; ``VmHWM`` (unlike ``ru_maxrss``, which Linux carries over from the parent across
fork and exec) starts fresh in each new process.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from convscope.methods.registry import build_method, get_method
from convscope.model import guarded, load_model


def _hwm_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def main(what: str, method: str, batch: int) -> None:
    from .attribution import captum_cases
    from .floor import forward_backward

    model = load_model("efficientnet_lite0")
    x = model.normalize(torch.rand(batch, 3, *model.input_size, generator=torch.Generator().manual_seed(0)))
    with guarded(model), torch.no_grad():
        target = model(x).argmax(1)
    case = next(c for c in captum_cases() if c.method == method)
    layer = "auto" if get_method(method).needs_layer else None
    ours = build_method(method, model, layer, **case.options)
    if what == "floor":
        def run() -> object:
            return forward_backward(model, x)
    elif what == "ours":
        def run() -> object:
            return ours(x, target)
    else:
        build = case.captum_default if what == "captum-default" else case.captum
        if build is None:
            raise SystemExit(f"no Captum counterpart for {method}")
        fn = build(model, getattr(ours, "layer", None) or "")

        def run() -> object:
            return fn(x, target)
    base = _hwm_mb()
    start = time.perf_counter()
    with guarded(model):
        run()
    seconds = time.perf_counter() - start
    print(json.dumps({"peak_mb": _hwm_mb() - base, "seconds": seconds}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
