"""Occlusion on the inference fast path against the bare forward floor and against Captum.

    python -m benchmarks.perturbation [--device cpu|cuda] [--no-jemalloc] [--repeats N] [--threads N]
                                     [--batch-table]

One image, 224x224, 32x32 window, stride 16: 169 occluded copies. Rows, timed in alternating
turns (same machine noise for all):

* ``floor``: 169 plain forward passes of the unmodified model at its best batch size (no folding,
  no perturbation): what any occlusion implementation must at least pay.
* ``fast floor``: the same 169 passes on :class:`convscope.model.FastForward` (BatchNorm folded,
  channels-last where it helps) at its default batch size: how far the fast path lowers the floor.
* ``ours``: ``occlusion`` with its default batch size (perturbed images built per chunk).
* ``captum default``: Captum's ``Occlusion`` at its default ``perturbations_per_eval=1``.
* ``captum best``: Captum at the best of ``perturbations_per_eval`` in 1, 4, 8, 16, 32.

``--batch-table`` first prints the forward cost per image by batch size (plain, folded,
folded + channels-last): the measurement behind :func:`convscope.model.default_batch_size` and
the channels-last choice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch

from convscope.methods.registry import build_method
from convscope.model import FastForward, Model, default_batch_size, guarded

from .timing import measure_alternating

WINDOW, STRIDE, BATCHES, PPES = 32, 16, (1, 4, 8, 16, 32), (1, 4, 8, 16, 32)


def _forwards(fn: Callable[[torch.Tensor], object], images: torch.Tensor, batch: int) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            for start in range(0, images.shape[0], batch):
                fn(images[start:start + batch])

    return run


def batch_table(model: Model, device: torch.device, images: torch.Tensor) -> dict[str, dict[int, float]]:
    """ms per image of plain / folded / folded + channels-last forward passes by batch size."""
    paths = {"plain": model, "folded": FastForward(model, channels_last=False),
             "folded+channels_last": FastForward(model, channels_last=True)}
    table: dict[str, dict[int, float]] = {name: {} for name in paths}
    print(f"\n== forward ms/image by batch size ({images.shape[0]} images per timing, in turns)")
    print(f"{'batch':>5} " + " ".join(f"{name:>22}" for name in paths))
    for batch in BATCHES:
        fns = [_forwards(path, images, batch) for path in paths.values()]
        timed = measure_alternating(fns, images=images.shape[0], device=device, repeats=3)
        for name, m in zip(paths, timed):
            table[name][batch] = m.per_image_ms
        print(f"{batch:5d} " + " ".join(f"{m.per_image_ms:22.2f}" for m in timed), flush=True)
    return table


def perturbation_rows(model: Model, device: torch.device, repeats: int = 5) -> None:
    """Print the batch-size table and the occlusion comparison (see the module docstring)."""
    from captum.attr import Occlusion

    gen = torch.Generator().manual_seed(0)
    x = model.normalize(torch.rand(1, 3, *model.input_size, generator=gen)).to(device)
    with guarded(model), torch.no_grad():
        target = int(model(x).argmax(1))
    occ = build_method("occlusion", model, window=WINDOW, stride=STRIDE)
    ys, xs = occ.grid(*model.input_size)
    windows = ys.shape[0] * xs.shape[0]
    copies = x.expand(windows, -1, -1, -1).clone()  # stand-ins for the occluded images
    with guarded(model):
        by_batch = measure_alternating([_forwards(model, copies[:32], b) for b in BATCHES],
                                       images=32, device=device, repeats=2)
    best_plain = BATCHES[min(range(len(BATCHES)), key=lambda i: by_batch[i].seconds)]
    print("\n== plain forward ms/image by batch: " + ", ".join(
        f"{b}: {m.per_image_ms:.1f}" for b, m in zip(BATCHES, by_batch)) + f" -> floor batch {best_plain}")

    def captum(ppe: int) -> Callable[[], object]:
        ref = Occlusion(model)
        return lambda: ref.attribute(x, sliding_window_shapes=(3, WINDOW, WINDOW),
                                     strides=(3, STRIDE, STRIDE), target=target,
                                     perturbations_per_eval=ppe)

    with guarded(model):  # Captum does not set eval mode itself; ours sets its own
        scan = measure_alternating([captum(p) for p in PPES], images=windows, device=device, repeats=1)
        best_ppe = PPES[min(range(len(PPES)), key=lambda i: scan[i].seconds)]
        print(f"\n== Captum Occlusion by perturbations_per_eval ({windows} windows): "
              + ", ".join(f"{p}: {1000 * m.seconds:.0f} ms" for p, m in zip(PPES, scan)))
        fast = FastForward(model)
        fns = [_forwards(model, copies, best_plain),
               _forwards(fast, copies, default_batch_size(device)),
               lambda: occ(x, target), captum(1), captum(best_ppe)]
        floor, fast_floor, ours, ref1, ref_best = measure_alternating(
            fns, images=windows, device=device, repeats=repeats)
    start = time.perf_counter()
    FastForward(model)
    build_ms = 1000 * (time.perf_counter() - start)
    print(f"\n== occlusion, {WINDOW}x{WINDOW} window, stride {STRIDE}, {windows} windows, one "
          f"{model.input_size[0]}x{model.input_size[1]} image, {repeats} turns")
    rows = [(f"floor: {windows} plain forwards, batch {best_plain}", floor),
            (f"fast floor: FastForward, batch {default_batch_size(device)}", fast_floor),
            (f"ours: occlusion, batch {default_batch_size(device)}", ours),
            ("captum default (perturbations_per_eval=1)", ref1),
            (f"captum best (perturbations_per_eval={best_ppe})", ref_best)]
    for name, m in rows:
        print(f"{name:<48} {1000 * m.seconds:9.0f} ms  {m.seconds / floor.seconds:6.2f}x floor")
    print(f"fast path build (fold + copy), once per call:   {build_ms:9.0f} ms")
    print(f"ours / floor = {ours.seconds / floor.seconds:.2f}   fast floor / floor = "
          f"{fast_floor.seconds / floor.seconds:.2f}   ours / captum default = "
          f"{ours.seconds / ref1.seconds:.2f}   ours / captum best = {ours.seconds / ref_best.seconds:.2f}")


def main() -> None:
    import argparse
    import platform
    import warnings

    from convscope.model import load_model

    from .run import reexec_with_jemalloc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-jemalloc", action="store_true")
    parser.add_argument("--repeats", type=int, default=5, help="timed turns of each row")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--batch-table", action="store_true",
                        help="first time plain / folded / channels-last forwards by batch size")
    args = parser.parse_args()
    device = torch.device(args.device)
    preload = os.environ.get("LD_PRELOAD", "")
    if device.type == "cpu" and not args.no_jemalloc:
        reexec_with_jemalloc("benchmarks.perturbation")
    warnings.filterwarnings("ignore", module="captum")
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = "jemalloc" if "jemalloc" in preload else "default malloc"
    print(f"perturbation benchmark: torch {torch.__version__}, {device}, {torch.get_num_threads()} "
          f"threads, {allocator}, {platform.processor() or platform.machine()}")
    model = load_model("efficientnet_lite0", device=device)
    if args.batch_table:
        with guarded(model):
            batch_table(model, device, model.normalize(torch.rand(32, 3, *model.input_size)).to(device))
    perturbation_rows(model, device, repeats=args.repeats)


if __name__ == "__main__":
    main()
