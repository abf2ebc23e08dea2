"""The SHAP family against Captum at equal sample counts, on the embedded model.

    python -m benchmarks.shap_bench [--device cpu|cuda] [--samples 32] [--coalitions 200] [--repeats 3]

Every row explains sample:cat (class 285) on the embedded EfficientNet-Lite0; rows of one method
are timed in turns (benchmarks/timing.py ``measure_alternating``), ``x ours`` = row / ours.

* GradientSHAP: ``samples`` draws from the same 8 uniform-noise baselines, no input noise; ours
  at ``batch_size`` 16 and 32, Captum's ``GradientShap`` (all draws in one batch).
* DeepLIFT-SHAP: the same 8 baselines, ours against Captum's ``DeepLiftShap`` on a copy whose
  ReLU6 units are ReLU pairs (Captum's DeepLIFT does not rewrite ReLU6: benchmarks/deeplift_bench).
* KernelSHAP: ``coalitions`` samples on the same SLIC superpixels (Captum's ``feature_mask``);
  ours at its default chunk, Captum at ``perturbations_per_eval`` 1 (its default) and 32.
"""

from __future__ import annotations

import argparse
import platform
import warnings
from collections.abc import Callable

import torch

from convscope.data import load_sample
from convscope.methods.attribution import DeepLiftShap, GradientShap, KernelShap
from convscope.methods.attribution.coalitions import superpixels
from convscope.model import Model, guarded

from .deeplift_bench import relu6_as_relus
from .timing import measure_alternating

TARGET = 285  # sample:cat, "Egyptian cat"


def _table(title: str, rows: list[tuple[str, Callable[[], object]]], device: torch.device,
           repeats: int) -> None:
    timed = measure_alternating([fn for _, fn in rows], images=1, device=device, repeats=repeats)
    print(f"\n== {title}")
    print(f"{'':<48} {'ms/call':>9} {'x ours':>7}")
    for (name, _), m in zip(rows, timed):
        print(f"{name:<48} {1000 * m.seconds:9.1f} {m.seconds / timed[0].seconds:7.2f}")


def shap_rows(model: Model, device: torch.device, samples: int = 32, coalitions: int = 200,
              repeats: int = 3) -> None:
    """Print the three tables (GradientSHAP, DeepLIFT-SHAP, KernelSHAP) against Captum."""
    from captum.attr import DeepLiftShap as CaptumDeepLiftShap
    from captum.attr import GradientShap as CaptumGradientShap
    from captum.attr import KernelShap as CaptumKernelShap

    pixels = model.resize(load_sample("cat"))
    x = model.normalize(pixels).to(device)
    gen = torch.Generator().manual_seed(0)
    baselines = model.normalize(torch.rand(8, 3, *model.input_size, generator=gen)).to(device)
    ours_gs = {b: GradientShap(model, baselines=baselines, samples=samples, batch_size=b) for b in (16, 32)}
    captum_gs = CaptumGradientShap(model)
    with guarded(model):  # Captum does not set eval mode itself; ours sets its own
        _table(f"gradient_shap, {samples} draws, 8 baselines", [
            ("convscope gradient_shap, batch_size=16", lambda: ours_gs[16](x, TARGET)),
            ("convscope gradient_shap, batch_size=32", lambda: ours_gs[32](x, TARGET)),
            ("captum GradientShap",
             lambda: captum_gs.attribute(x, baselines, n_samples=samples, target=TARGET)),
        ], device, repeats)
        ours_dls = DeepLiftShap(model, baselines=baselines)
        captum_dls = CaptumDeepLiftShap(relu6_as_relus(model.net).to(device))
        _table("deeplift_shap, 8 baselines", [
            ("convscope deeplift_shap", lambda: ours_dls(x, TARGET)),
            ("captum DeepLiftShap (relu-pair rewrite)",
             lambda: captum_dls.attribute(x, baselines, target=TARGET)),
        ], device, repeats)
        segments = superpixels(pixels, segments=50).to(device)
        ours_ks = KernelShap(model, samples=coalitions)
        captum_ks = CaptumKernelShap(model)

        def captum(per_eval: int) -> Callable[[], object]:
            return lambda: captum_ks.attribute(x, baselines=0.0, target=TARGET, n_samples=coalitions + 2,
                                               feature_mask=segments[:, None],
                                               perturbations_per_eval=per_eval)

        _table(f"kernel_shap, {coalitions} coalitions of {int(segments.max()) + 1} superpixels", [
            ("convscope kernel_shap (given segments)",
             lambda: ours_ks.explain_superpixels(x, TARGET, segments=segments)),
            ("captum KernelShap, perturbations_per_eval=1", captum(1)),
            ("captum KernelShap, perturbations_per_eval=32", captum(32)),
        ], device, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--coalitions", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from convscope.model import load_model

    warnings.filterwarnings("ignore")  # Captum's notes on hooks, DeepLIFT's gap on the model
    device = torch.device(args.device)
    print(f"shap benchmark: torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    model = load_model("efficientnet_lite0", device=device)
    shap_rows(model, device, args.samples, args.coalitions, args.repeats)


if __name__ == "__main__":
    main()
