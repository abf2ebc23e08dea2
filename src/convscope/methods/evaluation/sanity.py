"""Sanity checks for attribution methods (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Model parameter randomization, cascading (Sec. 3.1): the layers of a DEEP COPY of the model are
re-initialized one step at a time from the top (logits) down; after each step the method's map
for the same inputs and the same target classes (read on the original model) is compared with
the original map by Spearman rank correlation, of the absolute maps and of the signed maps (the
paper reports both), and optionally by SSIM. A method that explains the model must change when
the model is destroyed: Grad-CAM and the plain gradient do, guided backprop largely does not (its
maps stay image edge detectors, Fig. 2-4). The user's model is never modified.

Steps (``granularity``): "block" groups parameterized modules by their first non-container
ancestor (``_blocks.15``, ``layer4.1``, ``classifier``); "layer" makes each parameterized module a
step. In both, a normalization layer joins the step of the module run just before it (``conv_head``
with its BatchNorm). Steps are ordered by the execution order of a dry forward pass, last first.
A list of module names (or lists of names) gives the steps explicitly. ``max_steps`` stops early.

Re-initialization (seeded ``torch.Generator``, parameters only; buffers such as BatchNorm running
statistics are kept, so activations stay in range): ``init="default"`` draws weights and biases
from PyTorch's default family for convolutions and linear layers, U(-1/sqrt(fan_in),
1/sqrt(fan_in)); ``"gaussian"`` draws them from N(0, 1/fan_in). Normalization layers get the
identity affine map (weight 1, bias 0) in both modes.

Flag: a method is flagged as insensitive to the model when, at EVERY step run, the rank
correlations with the original (means over samples) of both the absolute and the signed maps stay
above ``threshold`` (default 0.5): the map never departed from the original, whatever was
destroyed. The minimum over steps (not the last step) is used because the cascade is not
monotone for rectified maps (Grad-CAM's correlation can drop to 0 at one step and recover at the
next, when the sign of the random features flips back). Running more steps can only clear a flag,
never raise one: a quick check with a few top steps errs towards flagging. Measured on
EfficientNet-Lite0 with ``sample:cat`` (block steps, default init, seed 0; abs / signed):
guided backprop stays >= 0.94 over the top 6 steps and deconvnet >= 0.65 over 8 (both flagged,
as the paper finds for guided methods); Grad-CAM falls to -0.07 at the head convolution; the
gradient stays near 0.4; gradient x input and integrated gradients keep about 0.5 on absolute
maps (the input's own structure) but fall to about 0 signed; Grad-CAM++ hardly moves for the top
two steps (0.99, 0.91) and is flagged with 3 steps (0.52) but not with 4 or more (0.25, then
down to -0.11).

Data randomization (Sec. 3.2) lives in :mod:`.random_labels`; it shares the helpers below.

Maps are compared at input resolution (layer maps upsampled bilinearly, as ``explain`` shows them),
channels summed (signed) or summed in absolute value (abs). Shapes: correlations (steps, B).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import BadArgument, check_choice, check_positive
from ...model import Model, guarded, list_layers, resolve_layer, target_indices
from ...model.layers import get_layer, unwrap
from ...model.targets import reads_output
from ...types import ProgressFn, Target
from ..attribution.baselines import gaussian_blur
from ..registry import build_method, get_method

Init = Literal["default", "gaussian"]
Granularity = Literal["block", "layer"]
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


@dataclass(frozen=True)
class SanityResult:
    """Similarity of the maps of a progressively randomized copy to the original maps."""

    method: str
    steps: list[str]
    """Name of each step: the group randomized at that step (cumulative from the top)."""
    layers: list[list[str]]
    """Parameterized modules re-initialized at each step."""
    spearman_abs: Tensor
    """(steps, B) rank correlation of the absolute maps with the original's."""
    spearman: Tensor
    """(steps, B) rank correlation of the signed maps."""
    ssim: Tensor | None
    """(steps, B) SSIM of the min-max normalized absolute maps, when asked for."""
    threshold: float
    flagged: bool
    """True when the maps never changed much: see the module docstring."""

    @property
    def lowest(self) -> float:
        """The flag's statistic: the smallest mean (abs or signed) rank correlation over the steps."""
        return float(torch.minimum(self.spearman_abs.mean(1), self.spearman.mean(1)).min())

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per step (sample means)."""
        out = []
        for i, name in enumerate(self.steps):
            row = {"step": name, "spearman_abs": float(self.spearman_abs[i].mean()),
                   "spearman": float(self.spearman[i].mean())}
            if self.ssim is not None:
                row["ssim"] = float(self.ssim[i].mean())
            out.append(row)
        return out


def average_ranks(values: Tensor) -> Tensor:
    """(B, N) -> (B, N) float ranks 0..N-1, tied values sharing their mean rank (as scipy does)."""
    out = torch.empty(values.shape, dtype=torch.float64, device=values.device)
    for i, row in enumerate(values):  # one sort per sample, not per pixel
        _, inverse, counts = torch.unique(row, return_inverse=True, return_counts=True)
        end = counts.cumsum(0).double()
        out[i] = ((end - counts.double()) + (end - 1))[inverse] / 2
    return out


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """(B,) Spearman rank correlation of each pair of maps (any shape after the batch dimension).

    A constant map has no ranking to share: its correlation is reported as 0.
    """
    ra, rb = (average_ranks(t.detach().flatten(1)) for t in (a, b))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denom = (ra.square().sum(1) * rb.square().sum(1)).sqrt()
    return torch.where(denom > 0, (ra * rb).sum(1) / denom.clamp(min=1e-300), torch.zeros_like(denom)).float()


def ssim(a: Tensor, b: Tensor, sigma: float = 1.5) -> Tensor:
    """(B,) mean SSIM (Wang et al. 2004, Gaussian window) of (B, 1, H, W) maps min-max scaled to [0, 1]."""

    def scaled(t: Tensor) -> Tensor:
        lo, hi = t.amin((1, 2, 3), keepdim=True), t.amax((1, 2, 3), keepdim=True)
        return ((t - lo) / (hi - lo).clamp(min=1e-12)).double()

    x, y = scaled(a.detach()), scaled(b.detach())
    mx, my = gaussian_blur(x, sigma), gaussian_blur(y, sigma)
    vx = gaussian_blur(x * x, sigma) - mx * mx
    vy = gaussian_blur(y * y, sigma) - my * my
    cov = gaussian_blur(x * y, sigma) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return index.mean((1, 2, 3)).float()


def _block_key(net: nn.Module, name: str) -> str:
    """The first ancestor of ``name`` (or itself) that is not a Sequential/ModuleList/ModuleDict."""
    parts, module = name.split("."), net
    for depth, part in enumerate(parts):
        module = getattr(module, part) if not isinstance(module, nn.ModuleList) else module[int(part)]
        if not isinstance(module, _CONTAINERS):
            return ".".join(parts[: depth + 1])
    return name


def randomization_steps(model: nn.Module, granularity: Granularity = "block") -> list[tuple[str, list[str]]]:
    """(step name, parameterized module names) from the top of the network (run last) down."""
    check_choice("granularity", granularity, Granularity)
    net = unwrap(model)
    modules = dict(net.named_modules())
    ran = sorted((i for i in list_layers(model) if i.order is not None
                  and any(True for _ in modules[i.name].parameters(recurse=False))),
                 key=lambda i: i.order)  # type: ignore[arg-type, return-value]
    groups: list[tuple[str, list[str]]] = []
    for info in ran:
        key = _block_key(net, info.name) if granularity == "block" else info.name
        joins_previous = isinstance(modules[info.name], _NORMS)  # a BatchNorm goes with its conv
        if groups and (groups[-1][0] == key or joins_previous):
            groups[-1][1].append(info.name)
        else:
            groups.append((key, [info.name]))
    return groups[::-1]


def reinitialize(modules: Sequence[nn.Module], generator: torch.Generator, init: Init = "default") -> None:
    """Draw new parameters for ``modules`` (not their children) in place; see the module doc."""
    check_choice("init", init, Init)
    with torch.no_grad():
        for module in modules:
            params = dict(module.named_parameters(recurse=False))
            if isinstance(module, _NORMS):
                for name, p in params.items():
                    p.fill_(1.0 if name == "weight" else 0.0)
                continue
            matrix = next((p for p in params.values() if p.ndim >= 2), None)
            for p in params.values():
                fan_in = max(1, matrix[0].numel() if matrix is not None else p.numel())
                if init == "gaussian":
                    new = torch.randn(p.shape, generator=generator) / fan_in ** 0.5
                else:
                    new = (torch.rand(p.shape, generator=generator) * 2 - 1) / fan_in ** 0.5
                p.copy_(new.to(p))


def method_maps(model: Model, method: str, layer: str | None, inputs: Tensor, target: Tensor,
          options: dict[str, Any]) -> Tensor:
    raw = build_method(method, model, layer, **options)(inputs, target).detach().float()
    if tuple(raw.shape[-2:]) != tuple(inputs.shape[-2:]):
        raw = F.interpolate(raw, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
    return raw


def compare_maps(new: Tensor, ref: Tensor, with_ssim: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    signed_new, signed_ref = new.sum(1, keepdim=True), ref.sum(1, keepdim=True)
    abs_new, abs_ref = new.abs().sum(1, keepdim=True), ref.abs().sum(1, keepdim=True)
    return (spearman(abs_new, abs_ref), spearman(signed_new, signed_ref),
            ssim(abs_new, abs_ref) if with_ssim else None)


def target_classes(model: Model, inputs: Tensor, target: Target) -> Tensor:
    if reads_output(target):
        raise BadArgument("sanity checks need class targets (an index, label, list or 'top1'), "
                          "not a callable: the randomized model must explain the same class")
    with guarded(model), torch.no_grad():
        idx = target_indices(model(inputs), target, model.labels)
    assert idx is not None
    return idx


def cascading_randomization(
    model: Model,
    inputs: Tensor,
    method: str,
    target: Target = "top1",
    *,
    layer: str | None = "auto",
    granularity: Granularity | Sequence[str | Sequence[str]] = "block",
    max_steps: int | None = None,
    init: Init = "default",
    seed: int = 0,
    threshold: float = 0.5,
    with_ssim: bool = False,
    progress: ProgressFn | None = None,
    **options: Any,
) -> SanityResult:
    """Cascading model-parameter randomization test of a registered ``method`` on a deep copy.

    ``inputs``: (B, C, H, W) model inputs; ``options`` go to the method (``build_method``).
    """
    if max_steps is not None:
        check_positive("max_steps", max_steps, integer=True)
    if isinstance(granularity, str):
        steps = randomization_steps(model, granularity)  # type: ignore[arg-type]
    else:
        steps = []
        for group in granularity:
            names = [group] if isinstance(group, str) else list(group)
            for n in names:
                get_layer(model, n)  # did-you-mean error on a typo
            steps.append((names[0], names))
    steps = steps[: max_steps] if max_steps is not None else steps
    if not steps:
        raise BadArgument("the model has no parameterized layers to randomize")
    layer = resolve_layer(model, layer or "auto") if get_method(method).needs_layer else None
    inputs = inputs.detach()
    idx = target_classes(model, inputs, target)
    reference = method_maps(model, method, layer, inputs, idx, options)
    clone = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    rho_abs, rho, sims = [], [], []
    for i, (_, names) in enumerate(steps):
        chosen = [m for n in names for m in get_layer(clone, n).modules()]
        reinitialize(chosen, generator, init)
        new = method_maps(clone, method, layer, inputs, idx, options)
        a, s, q = compare_maps(new, reference, with_ssim)
        rho_abs.append(a)
        rho.append(s)
        if q is not None:
            sims.append(q)
        if progress is not None:
            progress(i + 1, len(steps))
    result = SanityResult(method, [n for n, _ in steps], [list(g) for _, g in steps],
                          torch.stack(rho_abs), torch.stack(rho), torch.stack(sims) if sims else None,
                          threshold, flagged=False)
    return dataclasses.replace(result, flagged=result.lowest > threshold)
