"""Adversarial examples: FGSM and PGD, targeted or not, L-inf or L2 budgets in pixel space.

* FGSM (Goodfellow, Shlens & Szegedy 2015, Eq. 3): ``x' = x + eps * sign(grad_x J(x, y))``.
* PGD (Madry et al. 2018, Eq. 2 and section 2.1): ``x_{t+1} = Proj_{B(x, eps) cap [0,1]}(x_t +
  alpha * d_t)`` with ``d_t = sign(g_t)`` (L-inf) or ``g_t / ||g_t||_2`` (L2), optionally from a
  uniformly random start in the ball (Madry's "random restarts" without the restarts).

``J`` is the cross-entropy: ascended for the original class (untargeted), descended for the
target class (targeted; Kurakin et al. 2017's "iterative least-likely class" form). Images are
(B, 3, H, W) in [0, 1] and the budget ``eps`` is in those pixel units: 4/255 is four 8-bit levels.
The model's normalization is applied inside, so the budget does not depend on it.

**What is saved is what counts.** With ``quantize=True`` the returned images lie on the 8-bit
grid (bitwise what a saved-and-reloaded PNG gives) and within budget (see :mod:`.budget`). The
early stop also checks the rounded iterate, so it looks at what will be saved; images that still
fail take up to ``refine_steps`` more steps *on the grid* (one level per pixel for L-inf,
rounded steps for L2).
Success, predictions and norms are all measured on the returned images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import BadArgument
from ...model import Model, guarded, target_indices
from ...types import NormalizeFn, ProgressFn, Target
from .budget import Norm, norms, on_grid, project_to_budget
from .budget import quantize as to_grid


@dataclass(frozen=True)
class Adversarial:
    """The result of :func:`pgd` / :func:`fgsm`; every tensor has the batch as first dimension."""

    images: Tensor
    """(B, 3, H, W) adversarial images in [0, 1] (on the 8-bit grid when quantized)."""
    originals: Tensor
    target: Tensor | None
    """(B,) target classes of a targeted attack; ``None`` when untargeted."""
    original_class: Tensor
    original_prob: Tensor
    new_class: Tensor
    new_prob: Tensor
    """(B,) predicted class and its softmax probability, before and after."""
    success: Tensor
    """(B,) bool: predicts the target (targeted) or no longer the original class (untargeted)."""
    linf: Tensor
    l2: Tensor
    """(B,) norms of ``images - originals`` in pixel units (float32, as checked)."""
    steps: Tensor
    """(B,) gradient steps each image took (including steps on the 8-bit grid)."""
    eps: float
    norm: Norm
    quantized: bool

    @property
    def perturbation(self) -> Tensor:
        return self.images - self.originals


Rounding = Callable[[Tensor, Tensor, float, Norm], Tensor]


class _Net:
    """The model on [0, 1] images: logits, and the gradient of the attack objective."""

    def __init__(self, model: nn.Module, normalize: NormalizeFn | None) -> None:
        self.model = model
        self.normalize = normalize or (model.normalize if isinstance(model, Model) else (lambda x: x))

    def logits(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model(self.normalize(x)).flatten(1)

    def ascent(self, x: Tensor, classes: Tensor, targeted: bool) -> tuple[Tensor, Tensor]:
        """(logits at x, gradient of the objective to *increase*): log p_t, or -log p_y."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            logits = self.model(self.normalize(x)).flatten(1)
            logp = logits.log_softmax(1).gather(1, classes[:, None]).squeeze(1)
            gain = logp if targeted else -logp
            (grad,) = torch.autograd.grad(gain.sum(), x)
        return logits.detach(), grad


def _direction(grad: Tensor, norm: Norm) -> Tensor:
    if norm == "linf":
        return grad.sign()
    n = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return grad / n


def _succeeded(logits: Tensor, classes: Tensor, targeted: bool, margin: float = 0.0) -> Tensor:
    """Targeted: the target's probability beats every other class by ``margin``; untargeted: some
    other class beats the original one by ``margin`` (0: the prediction changed)."""
    probs = logits.softmax(1)
    mine = probs.gather(1, classes[:, None]).squeeze(1)
    others = probs.scatter(1, classes[:, None], float("-inf")).amax(1)
    if targeted:
        return (logits.argmax(1) == classes) & (mine - others >= margin)
    return (logits.argmax(1) != classes) & (others - mine >= margin)


def _random_start(orig: Tensor, eps: float, norm: Norm, generator: torch.Generator) -> Tensor:
    if norm == "linf":
        noise = (torch.rand(orig.shape, generator=generator) * 2 - 1) * eps
    else:
        g = torch.randn(orig.shape, generator=generator)
        radius = torch.rand(orig.shape[0], generator=generator) * eps
        noise = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * radius.view(-1, 1, 1, 1)
    return project_to_budget(orig + noise.to(orig.device, orig.dtype), orig, eps, norm)


def _check(eps: float, norm: str, steps: int, step_size: float | None, refine_steps: int) -> None:
    if norm not in ("linf", "l2"):
        raise BadArgument(f"norm={norm!r}: use 'linf' or 'l2'")
    if not eps > 0 or (norm == "linf" and eps > 1):
        raise BadArgument(f"eps={eps}: the budget must be > 0 (pixel units; L-inf at most 1)")
    if steps < 1 or refine_steps < 0 or (step_size is not None and not step_size > 0):
        raise BadArgument(f"steps={steps}, step_size={step_size}, refine_steps={refine_steps}: need "
                          "steps >= 1, step_size > 0, refine_steps >= 0")


def pgd(model: nn.Module, images: Tensor, *, eps: float, target: Target | None = None,
        norm: Norm = "linf", steps: int = 40, step_size: float | None = None,
        random_start: bool = False, early_stop: bool = True, quantize: bool = True,
        refine_steps: int = 20, seed: int = 0, normalize: NormalizeFn | None = None,
        batch_size: int = 16, margin: float = 0.0, progress: ProgressFn | None = None) -> Adversarial:
    """Projected gradient descent within ``eps`` of ``images`` (B, 3, H, W) in [0, 1].

    ``target``: the class(es) to reach (any :data:`~convscope.types.Target` form except a
    callable); ``None`` pushes away from each image's predicted class. ``step_size`` defaults to
    ``2.5 * eps / steps`` but at least ``eps / 4`` (Madry et al. use 2.5 eps / steps).
    ``early_stop``: an image stops moving once it succeeds (``steps`` counts its steps).
    ``margin``: success needs the target's probability to beat every other class by this much
    (untargeted: another class to beat the original one), so a stop is not a coin flip between two
    classes at 15.8% and 15.3%; 0 (the default) accepts any change of the prediction.
    ``quantize``: 8-bit output within budget (module docstring). Images are attacked in
    chunks of ``batch_size``; ``normalize`` overrides the :class:`Model`'s normalization.
    """
    _check(eps, norm, steps, step_size, refine_steps)
    if not 0 <= margin < 1:
        raise BadArgument(f"margin={margin}: a probability difference in [0, 1)")
    if images.ndim != 4 or images.shape[1] != 3:
        raise BadArgument(f"images must be (B, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
    if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise BadArgument("images must be finite and in [0, 1] (pixel space, before normalization)")
    if callable(target):
        raise BadArgument("target for an attack must be a class (index, label or one per image)")
    alpha = step_size if step_size is not None else max(2.5 * eps / steps, eps / 4)
    net, generator = _Net(model, normalize), torch.Generator().manual_seed(seed)
    labels = model.labels if isinstance(model, Model) else None
    p = next(model.parameters(), None)
    device = p.device if p is not None else images.device
    x0 = images.detach().float().to(device)
    parts = []
    with guarded(model):
        first = net.logits(x0)
        if target is None:
            classes, targeted = first.argmax(1), False
        else:
            classes, targeted = target_indices(first, target, labels), True  # type: ignore[assignment]
        total = steps * ((x0.shape[0] + batch_size - 1) // batch_size)
        for i, (orig, cls) in enumerate(zip(x0.split(batch_size), classes.split(batch_size))):
            def chunk_progress(done: int, _total: int, offset: int = i * steps) -> None:
                if progress is not None:
                    progress(offset + done, total)
            parts.append(_attack(net, orig, cls, targeted, eps, norm, steps, alpha, random_start,
                                 early_stop, quantize, refine_steps, generator, chunk_progress, margin))
        adv = torch.cat([a for a, _ in parts])
        used = torch.cat([s for _, s in parts])
        final = net.logits(adv)
    p0, pn = first.softmax(1), final.softmax(1)
    linf, l2 = norms(adv - x0)
    return Adversarial(adv, x0, classes if targeted else None, p0.argmax(1), p0.amax(1), pn.argmax(1),
                       pn.amax(1), _succeeded(final, classes, targeted, margin), linf, l2, used, eps, norm,
                       quantize)


def _attack(net: _Net, orig: Tensor, classes: Tensor, targeted: bool, eps: float, norm: Norm,
            steps: int, alpha: float, random_start: bool, early_stop: bool, quantized: bool,
            refine_steps: int, generator: torch.Generator, progress: ProgressFn,
            margin: float = 0.0) -> tuple[Tensor, Tensor]:
    """One chunk: PGD steps, then (if ``quantized``) rounding and steps on the grid.

    Images that are done (succeeded, with ``early_stop``) leave the batch: later forwards run
    only on the ones still moving.
    """
    x = _random_start(orig, eps, norm, generator) if random_start else orig.clone()
    used = torch.zeros(orig.shape[0], dtype=torch.long, device=orig.device)
    moving = torch.arange(orig.shape[0], device=orig.device)
    seen = to_grid if quantized else None  # judge (and differentiate at) what will be saved
    for step in range(steps):
        moving = _step(net, x, orig, classes, moving, targeted, eps, norm, alpha, early_stop, seen, None,
                       margin)
        used[moving] += 1
        progress(step + 1, steps)
        if moving.numel() == 0:
            progress(steps, steps)
            break
    if not quantized:
        return x, used
    x = to_grid(x, orig, eps, norm)
    moving = torch.arange(orig.shape[0], device=orig.device)
    grid_alpha = 1 / 255 if norm == "linf" else max(alpha, 1 / 255)
    for _ in range(refine_steps):
        moving = _step(net, x, orig, classes, moving, targeted, eps, norm, grid_alpha, True, None, to_grid,
                       margin)
        used[moving] += 1
        if moving.numel() == 0:
            break
    return x, used


def _step(net: _Net, x: Tensor, orig: Tensor, classes: Tensor, moving: Tensor, targeted: bool,
          eps: float, norm: Norm, alpha: float, early_stop: bool, seen: Rounding | None,
          rounding: Rounding | None, margin: float = 0.0) -> Tensor:
    """One step, in place on ``x[moving]``; returns the indices that moved (not yet successful).

    ``seen`` maps the iterate to the image that is judged (its 8-bit version, so an early stop
    is never undone by the final rounding; checked only where the iterate itself succeeds: one
    extra forward without backward); ``rounding`` maps the new iterate.
    """
    logits, grad = net.ascent(x[moving], classes[moving], targeted)
    if early_stop:
        done = _succeeded(logits, classes[moving], targeted, margin)
        if seen is not None and done.any():
            sub = moving[done]
            done[done.clone()] = _succeeded(net.logits(seen(x[sub], orig[sub], eps, norm)), classes[sub],
                                            targeted, margin)
        moving, grad = moving[~done], grad[~done]
    if moving.numel():
        o = orig[moving]
        new = project_to_budget(x[moving] + alpha * _direction(grad, norm), o, eps, norm)
        x[moving] = rounding(new, o, eps, norm) if rounding is not None else new
    return moving


def fgsm(model: nn.Module, images: Tensor, *, eps: float, target: Target | None = None,
         norm: Norm = "linf", quantize: bool = True, normalize: NormalizeFn | None = None,
         batch_size: int = 16) -> Adversarial:
    """The fast gradient sign method: one step of size ``eps`` (L2: along the normalized gradient).

    No early stop and no steps on the 8-bit grid: FGSM is one step by definition; the output is
    rounded within budget when ``quantize``.
    """
    return pgd(model, images, eps=eps, target=target, norm=norm, steps=1, step_size=eps,
               random_start=False, early_stop=False, quantize=quantize, refine_steps=0,
               normalize=normalize, batch_size=batch_size)


__all__ = ["Adversarial", "fgsm", "on_grid", "pgd"]
