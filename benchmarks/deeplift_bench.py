"""DeepLIFT (rescale rule) against the floor and Captum's DeepLift on the embedded model.

    python -m benchmarks.deeplift_bench [--device cpu|cuda] [--batches 1 8] [--repeats 5]

The reference rides along in the same batch, so the floor is one forward+backward of 2B images.
Captum's DeepLift hooks ``nn.ReLU`` modules only; ``nn.ReLU6`` is not among its supported
nonlinearities, so on EfficientNet-Lite0 as shipped it returns the plain gradient x (x - x_ref)
and its contributions miss t(x) - t(x_ref) by far. It is timed anyway ("captum as shipped") and,
for a like-for-like comparison, on a copy whose ReLU6 units are rewritten as
ReLU(x) - ReLU(x - 6) (the same function, and Captum's rescale of the two ReLUs is the rescale of
the ReLU6: "captum relu-pair"). The last columns give each result's summation-to-delta gap.
All rows of one batch size are timed in turns (benchmarks/timing.py ``measure_alternating``).
"""

from __future__ import annotations

import argparse
import copy
import platform
import warnings
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn

from convscope.methods.attribution import DeepLift
from convscope.model import Model, guarded

from .floor import forward_backward
from .timing import measure_alternating


class ReLU6AsReLUs(nn.Module):
    """ReLU6(x) = ReLU(x) - ReLU(x - 6) with hookable ``nn.ReLU`` modules. The clone matters:
    Captum hooks the tensor entering a ReLU and replaces its whole gradient, which would drop the
    gradient of the ``x - 6`` branch if both branches read the same tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.low, self.high = nn.ReLU(), nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.low(x.clone()) - self.high(x - 6)


def relu6_as_relus(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` with every ``nn.ReLU6`` rewritten for Captum."""
    net = copy.deepcopy(net).eval()
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(module, name, ReLU6AsReLUs())
    return net


def _gap(maps: Tensor, delta: Tensor) -> float:
    """Worst relative summation-to-delta gap over the batch."""
    return float(((maps.flatten(1).sum(1) - delta).abs() / delta.abs()).max())


def deeplift_rows(model: Model, device: torch.device, batches: tuple[int, ...] = (1, 8),
                  repeats: int = 5) -> None:
    """Print, per batch size: floor (2B forward+backward), ours, Captum as shipped and relu-pair."""
    try:
        from captum.attr import DeepLift as CaptumDeepLift
    except ImportError:
        CaptumDeepLift = None
    captum: list[tuple[str, Any]] = []
    if CaptumDeepLift is not None:
        captum = [("captum as shipped (ReLU6: plain gradient)", CaptumDeepLift(model)),
                  ("captum relu-pair rewrite", CaptumDeepLift(relu6_as_relus(model.net).to(device)))]
    gen = torch.Generator().manual_seed(0)
    ours = DeepLift(model)  # black reference
    for batch in batches:
        x = model.normalize(torch.rand(batch, 3, *model.input_size, generator=gen)).to(device)
        ref = ours.references(x)
        with guarded(model), torch.no_grad():
            target = model(x).argmax(1)
        delta = ours.score_change(x, target)
        rows: list[tuple[str, Callable[[], object]]] = [
            ("floor: forward+backward, 2B", lambda x=x, r=ref: forward_backward(model, torch.cat([x, r]))),
            ("convscope deeplift", lambda x=x, t=target: ours(x, t)),
        ]
        rows += [(name, lambda c=c, x=x, r=ref, t=target: c.attribute(x, r, target=t))
                 for name, c in captum]
        with guarded(model):  # Captum does not set eval mode itself; ours sets its own
            timed = measure_alternating([fn for _, fn in rows], images=batch, device=device,
                                        repeats=repeats)
            gaps = ["-"] + [f"{100 * _gap(cast(Tensor, fn()).detach(), delta):.2g}%" for _, fn in rows[1:]]
        floor = timed[0].seconds
        print(f"\n== deeplift, black reference, batch {batch} (x floor: time / forward+backward of "
              f"{2 * batch} images)")
        print(f"{'':<44} {'ms/call':>9} {'x floor':>8} {'x ours':>7} {'sum-to-delta gap':>17}")
        for (name, _), m, gap in zip(rows, timed, gaps):
            print(f"{name:<44} {1000 * m.seconds:9.1f} {m.seconds / floor:8.2f} "
                  f"{m.seconds / timed[1].seconds:7.2f} {gap:>17}")
    if CaptumDeepLift is None:
        print("captum is not installed: Captum rows skipped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from convscope.model import load_model

    warnings.filterwarnings("ignore", module="captum")  # its notes on hooks and requires_grad
    device = torch.device(args.device)
    print(f"deeplift benchmark: torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    model = load_model("efficientnet_lite0", device=device)
    deeplift_rows(model, device, tuple(args.batches), args.repeats)


if __name__ == "__main__":
    main()
