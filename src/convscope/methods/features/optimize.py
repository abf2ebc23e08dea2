"""Activation maximization: find images that maximize an objective (feature visualization).

Erhan et al. 2009; Simonyan et al. 2014 (class models, Eq. 1: ``argmax_I S_c(I) - lambda ||I||^2``);
Mahendran & Vedaldi 2015 (total variation); Yosinski et al. 2015 (blur every k steps);
Olah et al. 2017 (Fourier parameterization, transformation robustness, diversity).

Two layers of machinery:

* :func:`optimize_images` -- the general loop that image synthesis reuses (adversarial
  examples, inversion, textures, style): Adam on an :class:`~.params.ImageParam` minimizing any
  differentiable per-image loss ``(B,)``, with "blur every k steps", a callback after each step
  (which may stop early) and a progress callback. It knows nothing about networks.
* :func:`visualize` -- feature visualization on top of it: each step renders the images, applies
  the random transforms, runs the network under :func:`~convscope.model.guarded` with hooks on
  exactly the layers the objective reads (stopping the forward after the deepest one with
  :func:`~convscope.model.forward_until` unless the objective reads the logits) and minimizes

      loss_b = -objective_b(T(I_b)) + l2 * mean((I_b - 1/2)^2) + tv * TV(I_b)

  This line is the one place where the sign flips. Both penalties are means over pixels, so
  their weights do not depend on the image size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ...errors import BadArgument
from ...model import Model, capture, forward_until, guarded, resolve_layer
from ...model.device import device_of
from ...types import ProgressFn
from .lbfgs import LBFGS
from .objectives import Context, Objective
from .params import ImageParam, ParamKind, Start, image_param
from .transforms import Compose, Transform, gaussian_blur, standard_transforms

LossFn = Callable[[Tensor, int], Tensor]
"""``loss(images (B,3,H,W), step) -> (B,)``: what :func:`optimize_images` minimizes."""


@dataclass(frozen=True)
class Step:
    """What a callback sees after each optimizer step."""

    step: int
    """Steps done so far (1 after the first)."""
    steps: int
    images: Tensor
    """The current images, (B, 3, H, W) in [0, 1], detached."""
    losses: Tensor
    """The per-image loss of this step, (B,), detached."""


Callback = Callable[[Step], bool | None]
"""Called after each step; returning ``True`` stops the optimization."""


@dataclass(frozen=True)
class Optimized:
    images: Tensor
    losses: Tensor
    """(steps done, B) loss history."""


def l2_penalty(images: Tensor) -> Tensor:
    """``mean((I - 1/2)^2)`` per image: the L2 norm of the grey-centred image, per pixel."""
    return (images - 0.5).pow(2).flatten(1).mean(1)


def tv_penalty(images: Tensor) -> Tensor:
    """Anisotropic total variation per image: mean |vertical| + mean |horizontal| differences."""
    dy = (images[:, :, 1:] - images[:, :, :-1]).abs().flatten(1).mean(1)
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dx + dy


class Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1) on given gradients, with PyTorch's defaults.

    Written out rather than ``torch.optim.Adam``, whose first construction imports
    ``torch._dynamo``: several seconds of start-up for every CLI call and test process.
    """

    def __init__(self, leaves: Sequence[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.leaves, self.lr, self.betas, self.eps, self.t = list(leaves), lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.leaves]
        self.v = [torch.zeros_like(p) for p in self.leaves]

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, g, m, v in zip(self.leaves, grads, self.m, self.v):
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / (1 - b2**self.t)).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))


def optimize_images(param: ImageParam, loss: LossFn, *, steps: int, lr: float,
                    blur_every: int = 0, blur_sigma: float = 0.5, callback: Callback | None = None,
                    progress: ProgressFn | None = None,
                    optimizer: Literal["adam", "lbfgs"] = "adam") -> Optimized:
    """Minimize ``loss(param(), step).sum()`` over ``param``'s tensors with Adam (or L-BFGS).

    Gradients come from ``autograd.grad`` with respect to the parameterization's own leaves
    only, so no ``.grad`` is ever set, on the network or on the leaves. Every ``blur_every`` steps
    the image is replaced by its Gaussian blur (``blur_sigma`` pixels), through ``param.assign``.
    ``optimizer="lbfgs"`` (:mod:`.lbfgs`, ``lr`` scales its step, 1 is standard) suits smooth,
    deterministic losses such as style transfer; a step may evaluate the loss more than once.
    """
    if steps < 1 or lr <= 0 or blur_every < 0 or optimizer not in ("adam", "lbfgs"):
        raise BadArgument(f"steps={steps}, lr={lr}, blur_every={blur_every}, optimizer={optimizer!r}: "
                          "need steps >= 1, lr > 0, blur_every >= 0, optimizer 'adam' or 'lbfgs'")
    leaves = param.parameters()
    adam = Adam(leaves, lr)
    lbfgs = LBFGS(leaves, lr) if optimizer == "lbfgs" else None
    history = []
    with torch.enable_grad():
        for step in range(steps):
            if lbfgs is not None:
                losses = lbfgs.step(lambda s=step: loss(param(), s))  # type: ignore[misc]
            else:
                losses = loss(param(), step)
                adam.step(torch.autograd.grad(losses.sum(), leaves))
            param.project()
            if blur_every and (step + 1) % blur_every == 0:
                with torch.no_grad():
                    param.assign(gaussian_blur(param(), blur_sigma))
            history.append(losses.detach())
            if progress is not None:
                progress(step + 1, steps)
            if callback is not None:
                with torch.no_grad():
                    info = Step(step + 1, steps, param().detach(), history[-1])
                if callback(info):
                    break
    with torch.no_grad():
        return Optimized(param().detach(), torch.stack(history))


@dataclass(frozen=True)
class Visualization:
    """The result of :func:`visualize`."""

    images: Tensor
    """(B, 3, H, W) in [0, 1]: one picture per unit (or per batch member)."""
    history: Tensor
    """(steps, B) objective values during the optimization (on the transformed images)."""
    values: Tensor
    """(B,) objective values of the final ``images`` as they are (no transforms)."""
    objective: str
    seconds: float


class _Reader:
    """Runs the network on [0, 1] images and builds the objective's :class:`Context`.

    Hooks only ``objective.layers``; stops the forward after the deepest of them when the
    objective does not read the logits.
    """

    def __init__(self, model: nn.Module, objective: Objective) -> None:
        self.model, self.objective = model, objective
        self.resolved = [resolve_layer(model, name) for name in objective.layers]  # BadLayer early
        self.normalize: Callable[[Tensor], Tensor] = lambda x: x
        self.labels: Sequence[str] | None = None
        if isinstance(model, Model):
            self.normalize, self.labels = model.normalize, model.labels

    def context(self, images: Tensor) -> Context:
        x = self.normalize(images)
        names, logits = self.objective.layers, None
        if self.objective.reads_logits:
            with capture(self.model, self.resolved) as record:
                logits = self.model(x)
            acts = {n: record[r] for n, r in zip(names, self.resolved)}
        elif self.resolved:
            got = forward_until(self.model, x, self.resolved)
            acts = {n: got[r] for n, r in zip(names, self.resolved)}
        else:
            acts = {}
        return Context(images, acts, logits, self.labels)

    def __call__(self, images: Tensor) -> Tensor:
        return self.objective(self.context(images))


def evaluate(model: nn.Module, objective: Objective, images: Tensor) -> Tensor:
    """The objective's value for given images ``(B, 3, H, W)`` in [0, 1], shape (B,)."""
    _check_objective(objective)
    with guarded(model), torch.no_grad():
        return _Reader(model, objective)(images.to(device_of(model)))


def _check_objective(objective: object) -> None:
    """The library takes Objective objects; text such as ``"channel:L:3"`` is the CLI's spelling."""
    if not isinstance(objective, Objective):
        hint = (" (text is the command line's spelling: write channel('layer', 3), logit(285), ...)"
                if isinstance(objective, str) else "")
        raise BadArgument(f"objective={objective!r}: expected an Objective{hint}")


DEFAULT_LR = {"pixel": 0.05, "fourier": 0.05}


def visualize(
    model: nn.Module,
    objective: Objective,
    *,
    param: ParamKind | ImageParam = "fourier",
    transforms: Literal["standard", "none"] | Transform | Sequence[Transform] = "standard",
    steps: int = 256,
    lr: float | None = None,
    l2: float = 0.0,
    tv: float = 0.0,
    blur_every: int = 0,
    blur_sigma: float = 0.5,
    size: int | tuple[int, int] | None = None,
    batch: int | None = None,
    start: Start = "noise",
    seed: int = 0,
    decay: float = 1.0,
    callback: Callback | None = None,
    progress: ProgressFn | None = None,
) -> Visualization:
    """Images that maximize ``objective`` (an :class:`Objective` or its string, e.g. ``"logit:285"``).

    ``param``: ``"pixel"`` (sigmoid), ``"fourier"`` (``decay``: spectrum power law) or a built
    :class:`ImageParam` (which then fixes batch, size and start). ``batch`` defaults to the number
    of units a batched objective optimizes, else 1. ``size`` defaults to the model's input size.
    ``lr`` defaults to :data:`DEFAULT_LR` for the parameterization. All randomness (start noise,
    transforms) comes from one ``torch.Generator`` seeded with ``seed``: on CPU, equal seeds give
    bitwise-equal images.
    """
    _check_objective(objective)
    reader = _Reader(model, objective)
    device = device_of(model)
    generator = torch.Generator().manual_seed(seed)
    if isinstance(param, ImageParam):
        image, kind = param, "custom"
    else:
        n = batch if batch is not None else objective.batch or 1
        if size is None:
            size = model.input_size if isinstance(model, Model) else 224
        options = {"decay": decay} if param == "fourier" else {}
        image, kind = image_param(param, n, size, start=start, generator=generator, device=device,
                                  **options), param
    if objective.batch is not None and objective.batch != image.batch:
        raise BadArgument(f"objective {objective.name} optimizes {objective.batch} units, one per "
                          f"image, but batch={image.batch}")
    if transforms == "standard":
        jitter: Transform = standard_transforms()
    elif transforms == "none":
        jitter = Compose(())
    else:
        jitter = transforms if isinstance(transforms, Transform) else Compose(tuple(transforms))
    values: list[Tensor] = []

    def loss(images: Tensor, _step: int) -> Tensor:
        value = reader(jitter(images, generator))
        values.append(value.detach())
        penalty = l2 * l2_penalty(images) if l2 else 0.0
        penalty = penalty + tv * tv_penalty(images) if tv else penalty
        return -value + penalty  # maximize the objective: the one sign flip

    start_time = time.perf_counter()
    with guarded(model):
        result = optimize_images(image, loss, steps=steps, lr=lr or DEFAULT_LR.get(kind, 0.05),
                                 blur_every=blur_every, blur_sigma=blur_sigma, callback=callback,
                                 progress=progress)
        with torch.no_grad():
            final = reader(result.images)
    return Visualization(result.images, torch.stack(values), final, objective.name,
                         time.perf_counter() - start_time)
