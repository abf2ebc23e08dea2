"""The standard metrics' speed goals (issue 22): ROAD against its forward floor, and the
metrics Quantus also computes against Quantus on the same work.

    python -m benchmarks.check --only road metrics-quantus

``road``: ROAD (MoRF, 50 levels, noisy linear imputation) over a batch of 4 images on
EfficientNet-Lite0, against the forwards it needs: the same 200 rows (already built) scored on the
same fast path, in the same chunks. The difference is the imputation and the bookkeeping.

``metrics-quantus``: Quantus 0.6.0 lives only in the zoo venv (it imports torchvision), so this
group hands itself to that venv's interpreter (as ``cam_family`` does), and is skipped with the
reason where there is none. Same model, inputs and maps on both
sides, Quantus's options matched as in tests/zoo/test_metrics_quantus.py: max-sensitivity of the
gradient (10 noisy copies; Quantus explains one copy of the batch per call, convscope all copies
in one call), and sparseness, complexity and relevance rank accuracy together (the map-only
metrics: one call each on a batch of 16 maps).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .check import Context, Measured



def _lite0_batch(count: int) -> tuple[Any, torch.Tensor, torch.Tensor]:
    from convscope.data import load_image
    from convscope.model import guarded, load_model

    model = load_model("efficientnet_lite0")
    photos = [load_image("sample:cat"), load_image("sample:horse")]
    x = model.preprocess([photos[i % 2] for i in range(count)])
    with guarded(model), torch.no_grad():
        targets = model(x).argmax(1)
    return model, x, targets


def group_road(ctx: Context) -> list[Measured]:
    from convscope.methods.evaluation.road import impute, removal_counts, road
    from convscope.methods.registry import build_method
    from convscope.model import FastForward, default_batch_size, guarded

    from .check import ratio

    model, x, targets = _lite0_batch(4)
    maps = build_method("gradcam", model, "auto")(x, targets).detach()
    fast = FastForward(model)
    steps = ctx.size(50, 20)
    counts = removal_counts(224 * 224, steps)
    rows = torch.cat([impute(x[b:b + 1].expand(steps, -1, -1, -1),
                             (torch.rand(steps, 1, 224, 224) < (counts.view(-1, 1, 1, 1) / 224 ** 2)))
                      for b in range(x.shape[0])])  # stand-ins for the imputed images
    batch = default_batch_size(x.device)
    row_targets = targets.repeat_interleave(steps)
    ours = ctx.subject(lambda: road(model, x, maps, targets, steps=steps, fast=fast))
    floor = lambda: fast.scores(rows, row_targets, batch_size=batch)  # noqa: E731
    with guarded(model):
        turns = ctx.turns([ours, floor])
    return [ratio("road-floor", turns, 0, 1)]


def group_metrics_quantus(ctx: Context) -> list[Measured]:
    try:
        import quantus
    except ImportError:  # it lives in the zoo venv: the group runs there
        from .cam_family import delegate
        return delegate(ctx, "metrics-quantus", "quantus")
    import warnings

    import numpy as np

    from convscope.methods.evaluation import complexity, regions
    from convscope.methods.evaluation.robustness import max_sensitivity
    from convscope.methods.registry import build_method
    from convscope.model import Model, guarded

    from .check import ratio

    warnings.filterwarnings("ignore")
    model, x, targets = _lite0_batch(4)
    lite0, size = model, 224

    def saliency(m: Model, inputs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return build_method("saliency", m, None)(inputs, t).detach()

    def explain_func(model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray,
                     **_: object) -> np.ndarray:
        return saliency(lite0, torch.as_tensor(inputs).float(), torch.as_tensor(targets).long()).numpy()

    maps = saliency(model, x, targets)
    samples = ctx.size(10, 4)
    q_sens = quantus.MaxSensitivity(nr_samples=samples, abs=False, normalise=False, disable_warnings=True)
    args = {"model": model.net, "x_batch": x.numpy(), "y_batch": targets.numpy(), "device": "cpu",
            "a_batch": maps.numpy(), "channel_first": True}
    ours_sens = ctx.subject(lambda: max_sensitivity(model, x, maps, targets, saliency, samples=samples))
    theirs_sens = lambda: q_sens(**args, explain_func=explain_func)  # noqa: E731

    gen = torch.Generator().manual_seed(0)
    many = torch.rand(16, 1, size, size, generator=gen) ** 3
    masks = torch.zeros(16, 1, size, size, dtype=torch.bool)
    masks[:, :, 40:140, 60:180] = True
    q_maps = {"model": model.net, "x_batch": torch.zeros(16, 3, size, size).numpy(),
              "y_batch": np.zeros(16, dtype=int), "a_batch": many.numpy(), "device": "cpu",
              "s_batch": masks.numpy().astype(np.float32), "channel_first": True}
    q_sparse = quantus.Sparseness(abs=True, normalise=False, disable_warnings=True)
    q_complex = quantus.Complexity(abs=True, normalise=False, disable_warnings=True)
    q_rank = quantus.RelevanceRankAccuracy(abs=False, normalise=False, disable_warnings=True)

    def ours_maps() -> None:
        complexity.sparseness(many)
        complexity.complexity(many)
        regions.relevance_rank(many, masks)

    def theirs_maps() -> None:
        q_sparse(**q_maps)
        q_complex(**q_maps)
        q_rank(**q_maps)

    with guarded(model):
        turns = ctx.turns([ours_sens, theirs_sens])
        map_turns = ctx.turns([ctx.subject(ours_maps), theirs_maps], repeats=ctx.repeats + 3)
    return [ratio("max-sensitivity-quantus", turns, 0, 1),
            ratio("map-metrics-quantus", map_turns, 0, 1)]
