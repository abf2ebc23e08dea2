"""Style synthesis against the floor: fast-style apply at 512x512, style-transfer steps at 256x256.

    python -m benchmarks.synthesis_bench [--device cpu|cuda] [--nets 16x3,32x5] [--steps 10]

(a) ``stylize`` (:mod:`convscope.methods.synthesis.fast_style`) on 512x512 images at batch 1
    and 4 against the bare forward of the same transformer network under ``inference_mode``
    (``x bare``: ours / bare), for the CPU-sized net (width 16, 3 residual blocks) and Johnson's
    (width 32, 5 blocks). Goal: well under 1 s per 512x512 image on CPU. The nets are untrained
    (seeded): the time does not depend on the weights. ``CPU ms/img`` is process CPU time (all
    threads), which other users' load on a shared machine barely changes.
(b) Optimization-based style transfer steps per second at 256x256 (Adam on the pixels, content
    + Gram style loss through :class:`~convscope.methods.synthesis.losses.FeatureExtractor` on
    the embedded EfficientNet-Lite0, default layers) against two floors: the bare full-network
    forward+input-gradient (``benchmarks.floor.forward_backward``) and a hand-written forward
    through the blocks up to the deepest style layer (block 9) + backward, the least work a
    step needs. Rows: :func:`~convscope.methods.synthesis.style.transfer_style` with Adam (it
    also measures the losses of its start and result: two extra forwards per call) and the
    same step written out here from the shared losses (the least a step costs in convscope).

All rows of a group are timed in turns (``measure_alternating``) so they share the noise.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from convscope.methods.features.optimize import Adam
from convscope.methods.synthesis.fast_style import FastStyleNet, stylize
from convscope.methods.synthesis.losses import (
    FeatureExtractor,
    content_loss,
    default_style_layers,
    gram_targets,
    style_loss,
)
from convscope.model import Model, guarded, load_model

from .floor import forward_backward, truncated_pass
from .timing import measure_alternating


def apply_rows(nets: list[tuple[int, int]], device: torch.device, repeats: int) -> None:
    print(f"\n== (a) fast-style apply, 512x512, {device}")
    print(f"{'net':<22} {'batch':>5} {'ms/call':>9} {'ms/image':>9} {'images/s':>9} {'bare ms/img':>12} "
          f"{'x bare':>7} {'CPU ms/img':>11}")
    gen = torch.Generator().manual_seed(0)
    for width, blocks in nets:
        torch.manual_seed(0)
        net = FastStyleNet(width, blocks).to(device)
        for batch in (1, 4):
            x = torch.rand(batch, 3, 512, 512, generator=gen).to(device)

            def bare(x: torch.Tensor = x, net: FastStyleNet = net) -> None:
                with torch.inference_mode():
                    net(x)

            def ours(x: torch.Tensor = x, batch: int = batch, net: FastStyleNet = net) -> None:
                stylize(net, x, batch_size=batch)

            b, o = measure_alternating([bare, ours], images=batch, device=device, repeats=repeats)
            print(f"{f'width {width}, {blocks} blocks':<22} {batch:>5} {1000 * o.seconds:9.1f} "
                  f"{o.per_image_ms:9.1f} {1000 / o.per_image_ms:9.2f} {b.per_image_ms:12.1f} "
                  f"{o.seconds / b.seconds:7.2f} {1000 * _cpu_seconds(ours, repeats) / batch:11.1f}")


def _cpu_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median CPU time of ``fn()`` summed over this process's threads.

    On a shared machine the wall time grows with other people's load; the CPU time barely does.
    With one thread (``--threads 1``) it is the wall time the call would take on one idle core.
    """
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def style_rows(model: Model, device: torch.device, steps: int, repeats: int, size: int = 256) -> None:
    layers = default_style_layers(model)
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, size, size, generator=gen).to(device)
    style = torch.rand(1, 3, size, size, generator=gen).to(device)
    extract = FeatureExtractor(model, [*layers.style, layers.content])
    with torch.no_grad():
        feats = extract(torch.cat([content, style]))
        target = feats[layers.content][:1]
        grams = gram_targets({n: feats[n][1:] for n in layers.style})
    x = model.normalize(content)
    deepest = max(int(n.split(".")[1]) for n in [*layers.style, layers.content] if n.startswith("_blocks."))

    def floor_full() -> None:
        with guarded(model):
            for _ in range(steps):
                forward_backward(model, x)

    def floor_layers() -> None:
        with guarded(model):
            for _ in range(steps):
                truncated_pass(model, x, deepest + 1)

    def ours() -> None:
        image = content.clone().requires_grad_(True)
        adam = Adam([image], 0.02)
        with torch.enable_grad():
            for _ in range(steps):
                f = extract(image.clamp(0, 1))
                loss = content_loss(f[layers.content], target) + 1e4 * style_loss(f, grams)
                adam.step(torch.autograd.grad(loss.sum(), [image]))

    fns, names = [floor_full, floor_layers, ours], ["floor: full forward+backward",
                                                   f"floor: forward to _blocks.{deepest}+backward",
                                                   "style transfer step (losses.py + Adam)"]
    try:
        from convscope.methods.synthesis.style import transfer_style
    except ImportError:  # style.py not there: the hand-written step alone
        transfer_style = None
    if transfer_style is not None:
        fns.append(lambda: transfer_style(model, content[0], style[0], optimizer="adam", steps=steps))
        names.append("transfer_style(optimizer='adam') (style.py)")
    timed = measure_alternating(fns, images=steps, device=device, repeats=repeats)
    full, trunc = timed[0].seconds, timed[1].seconds
    print(f"\n== (b) style transfer, {size}x{size}, batch 1, {steps} steps per call, {device}")
    print(f"{'row':<44} {'ms/step':>8} {'steps/s':>8} {'x full floor':>13} {'x layer floor':>14}")
    for name, m in zip(names, timed):
        per = m.seconds / steps
        print(f"{name:<44} {1000 * per:8.1f} {1 / per:8.2f} {m.seconds / full:13.2f} "
              f"{m.seconds / trunc:14.2f}")


def synthesis_rows(model: Model, device: torch.device) -> None:
    """Both tables at their defaults, for ``benchmarks.run``."""
    apply_rows([(16, 3), (32, 5)], device, repeats=3)
    style_rows(model, device, steps=10, repeats=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--nets", default="16x3,32x5", help="WIDTHxBLOCKS,... (default 16x3,32x5)")
    parser.add_argument("--steps", type=int, default=10, help="style-transfer steps per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--only", choices=["apply", "style"], help="run one group")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    nets = [tuple(int(v) for v in spec.split("x")) for spec in args.nets.split(",")]
    print(f"synthesis benchmark: torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, median of {args.repeats} in turns")
    if args.only in (None, "apply"):
        apply_rows(nets, device, args.repeats)  # type: ignore[arg-type]
    if args.only in (None, "style"):
        style_rows(load_model("efficientnet_lite0", device=device), device, args.steps, args.repeats)


if __name__ == "__main__":
    main()
