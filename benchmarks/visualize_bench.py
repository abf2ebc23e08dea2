"""Feature visualization against the floor: 256 steps at 224x224 of a channel objective.

    python -m benchmarks.visualize_bench [--device cpu|cuda] [--steps 256] [--repeats 3]

Rows, all timed in turns (``measure_alternating``) so they share the machine's noise:

* ``floor: full forward+backward`` -- ``steps`` bare input-gradient passes through the whole
  network (``benchmarks.floor.forward_backward``), the floor every method is compared with;
* ``floor: forward to LAYER+backward`` -- ``steps`` hand-written passes through the stem and the
  blocks up to ``LAYER`` only, the least work a channel objective of that layer needs;
* ``visualize pixel`` / ``visualize fourier`` -- :func:`convscope.methods.features.visualize`
  with its defaults (Lucid's standard transforms), including the parameterization, transforms,
  hooks and Adam.

Goal: within 1.3x of the full floor (``visualize`` stops the forward after the objective's
deepest layer, so it can be well below it).
"""

from __future__ import annotations

import argparse
import platform

import torch

from convscope.methods.features import channel, visualize
from convscope.model import Model, guarded, load_model

from .floor import forward_backward, truncated_pass
from .timing import measure_alternating

LAYER, CHANNEL = "_blocks.8", 0


def visualize_rows(model: Model, device: torch.device, steps: int = 256, size: int = 224,
                   repeats: int = 3) -> None:
    """Print the floors and ``visualize`` (pixel, Fourier) for ``steps`` steps, timed in turns."""
    x = model.normalize(torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)))
    x = x.to(device)
    blocks = int(LAYER.split(".")[1]) + 1
    objective = f"channel:{LAYER}:{CHANNEL}"

    def floor_full() -> None:
        with guarded(model):
            for _ in range(steps):
                forward_backward(model, x)

    def floor_layer() -> None:
        with guarded(model):
            for _ in range(steps):
                truncated_pass(model, x, blocks, CHANNEL)

    def ours(param: str):  # type: ignore[no-untyped-def]
        return lambda: visualize(model, channel(LAYER, CHANNEL), param=param, steps=steps, size=size)  # type: ignore[arg-type]

    print(f"\n== visualize {objective}, {steps} steps at {size}x{size}, batch 1, "
          f"median of {repeats} in turns")
    names = ["floor: full forward+backward", f"floor: forward to {LAYER}+backward",
             "visualize pixel (standard transforms)", "visualize fourier (standard transforms)"]
    timed = measure_alternating([floor_full, floor_layer, ours("pixel"), ours("fourier")],
                                images=steps, device=device, repeats=repeats)
    full, layer = timed[0].seconds, timed[1].seconds
    print(f"{'row':<42} {'s/run':>8} {'ms/step':>8} {'x full floor':>13} {'x layer floor':>14}")
    for name, m in zip(names, timed):
        print(f"{name:<42} {m.seconds:8.2f} {1000 * m.seconds / steps:8.1f} "
              f"{m.seconds / full:13.2f} {m.seconds / layer:14.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"visualize benchmark: torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    visualize_rows(load_model("efficientnet_lite0", device=device), device, args.steps, args.size,
                   args.repeats)


if __name__ == "__main__":
    main()
