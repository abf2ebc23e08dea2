"""LIME: ours against the floor, the ``lime`` package and Captum, at equal sample counts.

    python -m benchmarks.lime_bench [--device cpu|cuda] [--samples 1000] [--repeats 2]

Every row explains sample:cat (class 285) on the embedded EfficientNet-Lite0 with the same SLIC
segmentation (ours, passed to the others: lime's ``segmentation_fn``, Captum's ``feature_mask``)
and the same number of samples. Rows are timed in turns (floor, ours, lime, Captum, ...) so all
see the same machine noise; ``x floor`` = time / floor, ``ours / row`` = our time (at our
default chunk, and at the floor's batch size) / that row's: below 1 means ours is faster.

* floor: ``samples`` plain forward passes of the model under ``inference_mode``, in chunks of
  the best batch size (the fastest per image among :data:`FLOOR_BATCHES`, probed first);
* ours: :class:`convscope.methods.attribution.Lime` at its defaults (mean-colour hiding, the
  shared inference fast path, its default chunk ``default_batch_size``), and at the floor's
  batch size;
* lime: ``LimeImageExplainer().explain_instance`` at its default ``batch_size=10``, classifier =
  softmax of the model under ``inference_mode`` (numpy <-> torch at the border, as users write);
* Captum: ``captum.attr.Lime`` (its default Lasso surrogate and kernel) on softmax outputs, with
  ``perturbations_per_eval`` at its default 1 and at the floor's best batch size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from importlib import metadata

import numpy as np
import torch

from convscope.data import load_sample
from convscope.methods.attribution import Lime
from convscope.model import Model, default_batch_size, guarded

from .run import reexec_with_jemalloc

FLOOR_BATCHES = (4, 8, 16, 32, 64)
TARGET = 285  # sample:cat, "Egyptian cat"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def best_batch(model: Model, x: torch.Tensor, batches: tuple[int, ...] = FLOOR_BATCHES) -> int:
    """The batch size with the lowest per-image forward time (two timed passes each)."""
    per_image = {}
    for batch in batches:
        chunk = x.expand(batch, -1, -1, -1).contiguous()
        with torch.inference_mode():
            model(chunk)
            start = time.perf_counter()
            for _ in range(2):
                model(chunk)
            per_image[batch] = (time.perf_counter() - start) / (2 * batch)
    print("floor probe, ms/image: " + ", ".join(f"b{b} {1000 * t:.1f}" for b, t in per_image.items()))
    return min(per_image, key=per_image.__getitem__)


Row = Callable[[int], Callable[[], object]]
"""A row of the table: ``make(samples)`` returns the call to time at that sample count."""


def floor_row(model: Model, x: torch.Tensor, batch: int) -> Row:
    chunk = x.expand(batch, -1, -1, -1).contiguous()

    def make(samples: int) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                for start in range(0, samples, batch):
                    model(chunk[: min(batch, samples - start)])

        return run

    return make


def ours_row(model: Model, x: torch.Tensor, batch: int | None) -> Row:
    return lambda samples: lambda: Lime(model, samples=samples, batch_size=batch)(x, TARGET)


def lime_package_row(model: Model, pixels: torch.Tensor, segments: np.ndarray) -> Row | None:
    try:
        from lime import lime_image
    except ImportError:
        return None
    device = pixels.device
    image = pixels[0].permute(1, 2, 0).double().cpu().numpy()

    def classifier(images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(images).permute(0, 3, 1, 2).float().to(device)
        with torch.inference_mode():
            return model(model.normalize(batch)).softmax(-1).cpu().numpy()

    def make(samples: int) -> Callable[[], object]:
        def run() -> object:
            explainer = lime_image.LimeImageExplainer(random_state=0)
            return explainer.explain_instance(image, classifier, labels=(TARGET,), top_labels=None,
                                              num_samples=samples, segmentation_fn=lambda _i: segments)

        return run

    return make


def captum_row(model: Model, x: torch.Tensor, segments: torch.Tensor, per_eval: int) -> Row | None:
    try:
        from captum.attr import Lime as CaptumLime
    except ImportError:
        return None
    explainer = CaptumLime(lambda inp: model(inp).softmax(-1))
    mask = segments[:, None].expand_as(x)

    def make(samples: int) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return explainer.attribute(x, target=TARGET, feature_mask=mask, n_samples=samples,
                                           perturbations_per_eval=per_eval)

        return run

    return make


def timed_in_turns(rows: list[Row], samples: int, device: torch.device, repeats: int,
                   warmup_samples: int = 16) -> list[float]:
    """Median seconds per row over ``repeats`` turns (a, b, c, a, b, c, ...).

    Each row is first warmed up at a small sample count (kernels, allocator, fold), so the slow
    rows are not run in full one extra time: :func:`benchmarks.timing.measure_alternating`
    would warm up with a full call.
    """
    for make in rows:
        make(warmup_samples)()
    calls = [make(samples) for make in rows]
    times: list[list[float]] = [[] for _ in rows]
    for _ in range(repeats):
        for call, record in zip(calls, times):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            call()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            record.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def lime_rows(model: Model, device: torch.device, samples: int = 1000, repeats: int = 2) -> None:
    """Print one table: floor, ours, lime, Captum (default and best chunk), timed in turns."""
    warnings.filterwarnings("ignore", module="captum")
    print(f"\n== LIME, {samples} samples, sample:cat on {model.name} {model.input_size} "
          f"(lime {_version('lime')}, scikit-learn {_version('scikit-learn')}, "
          f"captum {_version('captum')})")
    pixels = model.resize(load_sample("cat")).to(device)
    x = model.normalize(pixels)
    segments = Lime(model, samples=2).explain_superpixels(x, TARGET).segments
    print(f"superpixels: {int(segments.max()) + 1} (SLIC, segments=50); ours' default chunk "
          f"{default_batch_size(device)}")
    with guarded(model):
        batch = best_batch(model, x)
    rows: list[tuple[str, Row | None]] = [
        (f"floor: {samples} forwards, batch {batch}", floor_row(model, x, batch)),
        ("ours (convscope Lime, defaults)", ours_row(model, x, None)),
        (f"ours, batch_size={batch}", ours_row(model, x, batch)),
        ("lime package, batch_size=10", lime_package_row(model, pixels, segments[0].cpu().numpy())),
        ("captum Lime, perturbations_per_eval=1", captum_row(model, x, segments, 1)),
        (f"captum Lime, perturbations_per_eval={batch}", captum_row(model, x, segments, batch)),
    ]
    missing = [name for name, make in rows if make is None]
    present = [(name, make) for name, make in rows if make is not None]
    stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115  (lime's tqdm bar)
    try:
        with guarded(model):  # lime and Captum do not set eval mode; ours sets its own
            seconds = timed_in_turns([make for _, make in present], samples, device, repeats)
    finally:
        sys.stderr.close()
        sys.stderr = stderr
    floor, mine, mine_b = seconds[:3]
    print(f"{'row':<44} {'seconds':>8} {'x floor':>8} {'ours / row':>10} {f'ours b{batch} / row':>15}")
    for (name, _), t in zip(present, seconds):
        print(f"{name:<44} {t:8.2f} {t / floor:8.2f} {mine / t:10.2f} {mine_b / t:15.2f}")
    for name in missing:
        print(f"{name:<44} (package not installed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-jemalloc", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu" and not args.no_jemalloc:
        reexec_with_jemalloc("benchmarks.lime_bench")
    from convscope.model import load_model

    allocator = "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "default malloc"
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, {allocator}")
    lime_rows(load_model("efficientnet_lite0", device=device), device, args.samples, args.repeats)


if __name__ == "__main__":
    main()
