"""LRP (EpsilonGammaBox) against the floor and against zennit, on the embedded model.

    python -m benchmarks.lrp_bench [--device cpu|cuda] [--batches 1 8] [--repeats 5] [--no-jemalloc]

On CPU it re-executes itself under jemalloc with decay off when installed, as ``benchmarks.run``
does (fresh allocations dominate otherwise: the BN fold's new copy, the rules' new tensors).

Rows, timed in turns (a, b, c, ...) so all see the same machine noise:

* ``floor``: one forward+backward pass (the input gradient of the top logit);
* ``ours``: ``LRP(model, composite="epsilon_gamma_box")`` called repeatedly on one instance (the
  batch-norm fold of the model is made on the first call and reused while the weights are
  unchanged);
* ``ours, new instance``: a fresh instance per call, so the BN fold is part of every call (what
  ``explain(model, x, method="lrp")`` costs);
* ``zennit``: ``zennit.composites.EpsilonGammaBox`` with the same bounds, gamma and epsilon, BN merged
  by its ``SequentialMergeBatchNorm`` canonizer and the residual adds of EfficientNet-Lite routed
  through its ``Sum`` layer (the canonizer below; without it zennit's gradient doubles relevance
  at every skip). Its attributor context (hooks, canonizers) is entered once, outside the timing;
  it runs on a deep copy, since zennit changes the modules it is given.

zennit is a test-only extra: ``pip install --no-deps zennit`` (its dependency on torchvision is only
for torchvision canonizers; it is stubbed here when torchvision is absent).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from convscope.methods.attribution.lrp import LRP
from convscope.model import Model, guarded

from .floor import forward_backward
from .timing import measure_alternating


def import_zennit() -> Any | None:
    """The zennit package, or None. A missing torchvision is stubbed for the import only."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):  # absent, or built for another torch (its ops fail to load)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        stub = {name: types.ModuleType(name) for name in
                ("torchvision", "torchvision.models", "torchvision.models.resnet")}
        resnet = stub["torchvision.models.resnet"]
        resnet.Bottleneck = type("Bottleneck", (nn.Module,), {})  # type: ignore[attr-defined]
        resnet.BasicBlock = type("BasicBlock", (nn.Module,), {})  # type: ignore[attr-defined]
        missing = [name for name in stub if name not in sys.modules]
        sys.modules.update({name: stub[name] for name in missing})
        try:
            import zennit.attribution
        except ImportError:
            return None
        finally:
            for name in missing:
                sys.modules.pop(name, None)
    try:
        import zennit.attribution
        import zennit.canonizers
        import zennit.composites
        import zennit.layer
    except ImportError:
        return None
    return zennit


def lite_sum_canonizer(zennit: Any) -> Any:
    """A zennit canonizer that sends EfficientNet-Lite's residual ``h + x`` through ``zennit.layer.Sum``."""
    from convscope.model.efficientnet_lite import MBConvBlock

    def forward(self: MBConvBlock, x: torch.Tensor) -> torch.Tensor:
        h = self._relu0(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = self._relu1(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return self.canonizer_sum(torch.stack([h, x], dim=-1))

    def attribute_map(name: str, module: nn.Module) -> dict[str, Any] | None:
        if isinstance(module, MBConvBlock) and module.skip:
            return {"forward": forward.__get__(module), "canonizer_sum": zennit.layer.Sum()}
        return None

    return zennit.canonizers.AttributeCanonizer(attribute_map)


def zennit_epsilon_gamma_box(zennit: Any, model: Model, x: torch.Tensor) -> Any:
    """zennit's EpsilonGammaBox with our bounds and defaults (gamma 0.25, epsilon 1e-6)."""
    low = model.normalize(torch.zeros_like(x[:1]))
    high = model.normalize(torch.ones_like(x[:1]))
    canonizers = [zennit.canonizers.SequentialMergeBatchNorm(), lite_sum_canonizer(zennit)]
    return zennit.composites.EpsilonGammaBox(low=low, high=high, gamma=0.25, epsilon=1e-6,
                                             canonizers=canonizers)


def lrp_rows(model: Model, device: torch.device, batches: tuple[int, ...] = (1, 8),
             repeats: int = 5) -> None:
    """Print one table: ms per call and ratios to the floor and to zennit, per batch size."""
    zennit = import_zennit()
    gen = torch.Generator().manual_seed(0)
    print(f"\n== LRP epsilon_gamma_box on {model.name} {model.input_size}, {device} "
          f"(x floor: time / forward+backward){'' if zennit else '  [zennit not installed]'}")
    print(f"{'batch':>5} {'floor ms':>9} {'ours ms':>9} {'x floor':>8} {'new inst ms':>12} "
          f"{'zennit ms':>10} {'x floor':>8} {'ours/zennit':>12}")
    ours = LRP(model, composite="epsilon_gamma_box")
    twin = copy.deepcopy(model)  # zennit hooks and canonizes the modules it is given
    for batch in batches:
        x = model.normalize(torch.rand(batch, 3, *model.input_size, generator=gen)).to(device)
        with guarded(model), torch.no_grad():
            target = model(x).argmax(1)
        fns: list[Callable[[], object]] = [
            lambda x=x: forward_backward(model, x),
            lambda x=x, t=target: ours(x, t),
            lambda x=x, t=target: LRP(model, composite="epsilon_gamma_box")(x, t),
        ]
        context = None
        if zennit is not None:
            composite = zennit_epsilon_gamma_box(zennit, model, x)
            context = zennit.attribution.Gradient(model=twin, composite=composite)
            attributor = context.__enter__()
            eye = torch.eye(1000, device=device)[target]
            fns.append(lambda x=x, a=attributor, e=eye: a(x, lambda out, e=e: e * out))
        try:
            with guarded(model), guarded(twin):
                timed = measure_alternating(fns, images=batch, device=device, repeats=repeats)
        finally:
            if context is not None:
                context.__exit__(None, None, None)
        floor, mine, fresh = timed[0].seconds, timed[1].seconds, timed[2].seconds
        line = (f"{batch:5d} {1000 * floor:9.1f} {1000 * mine:9.1f} {mine / floor:8.2f} "
                f"{1000 * fresh:12.1f}")
        if len(timed) > 3:
            ref = timed[3].seconds
            line += f" {1000 * ref:10.1f} {ref / floor:8.2f} {mine / ref:12.2f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-jemalloc", action="store_true")
    args = parser.parse_args()
    from convscope.model import load_model

    from .run import reexec_with_jemalloc

    device = torch.device(args.device)
    preload = os.environ.get("LD_PRELOAD", "")
    if device.type == "cpu" and not args.no_jemalloc:
        reexec_with_jemalloc("benchmarks.lrp_bench")
    allocator = "jemalloc" if "jemalloc" in preload else "default malloc"
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, {allocator}")
    lrp_rows(load_model("efficientnet_lite0", device=device), device, tuple(args.batches), args.repeats)


if __name__ == "__main__":
    main()
