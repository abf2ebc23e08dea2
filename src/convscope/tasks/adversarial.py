"""Images that make the network see a class: ``adversarial`` (PGD / FGSM within a pixel budget)
and ``fooling`` (noise optimized into a class), as tasks returning a :class:`Synthesis`.

The adversarial image is first resized to ``size`` (default: the model's input) and rounded to
8 bits: that is the original the budget is measured against, so the saved PNG still fools the
model when loaded back.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Literal

import torch
from torch import Tensor

from ..data import load_image
from ..errors import BadArgument
from ..methods.predict import top_k
from ..methods.synthesis import fgsm, fool, on_grid, pgd
from ..model import Model
from ..model.targets import check_class
from ..render import png_bytes
from ..types import ProgressFn, Target
from .inputs import ImageSource
from .synthesis import Synthesis, _image, sized

DEFAULT_MARGIN = 0.5
"""What the CLI and the web ask of a targeted attack: a stop at "koala 15.8% against 15.3%"
convinces nobody, so the target must lead every other class by 50 points."""


MAX_BUDGET_TEXT = 100
"""Longer budget text is refused: no budget needs more characters."""


def parse_budget(text: str, name: str = "--eps") -> float:
    """``4/255``, ``0.0157`` or ``1e-2`` -> float; pixel units of images in [0, 1], > 0."""
    try:
        if len(str(text)) > MAX_BUDGET_TEXT:
            raise ValueError(text)
        value = float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError, OverflowError):
        raise BadArgument(f"{name} {str(text)[:40]!r}: give a number or a fraction such as 4/255") from None
    if not value > 0:
        raise BadArgument(f"{name} {text!r}: the budget must be > 0")
    return value


def class_of(model: Model, text: str) -> int:
    """The class index that ``text`` (an index or one of the model's labels) names; refused
    before any work when the model has no such class."""
    index = check_class(text, model.labels, top1=False)
    assert isinstance(index, int)
    return index


def _label(model: Model, index: int) -> str:
    return f"{model.label(index)} ({index})"


def top_classes(model: Model, images: Tensor, k: int = 3) -> list[dict[str, Any]]:
    """The ``k`` most probable classes of the first of ``images`` (B, 3, H, W) in [0, 1], as the
    attack saw them: normalized at their own size, not resized to the model's input."""
    probs, indices = top_k(model, model.normalize(images[:1].to(model.device)), k)
    return [{"index": int(i), "label": model.label(int(i)), "probability": round(float(p), 6)}
            for p, i in zip(probs[0].tolist(), indices[0].tolist())]


def saved_verdict(model: Model, image: Tensor, *, original: int, target: int | None) -> dict[str, Any]:
    """What someone who downloads the adversarial image sees: ``image`` (3, H, W) encoded as an
    8-bit PNG, decoded and classified again. ``fools``: the reloaded image is classified as
    ``target`` (targeted) or no longer as ``original`` (untargeted)."""
    back = load_image(png_bytes(image))
    top = top_classes(model, back[None])
    best = top[0]["index"]
    return {"top": top, "fools": best == target if target is not None else best != original,
            "same_pixels": bool(torch.equal(back, image.detach().cpu().float()))}


def amplified(delta: Tensor) -> tuple[Tensor, float | None]:
    """A perturbation (3, H, W) drawn around mid-gray at full contrast, and the gain used."""
    scale = float(delta.abs().max())
    if scale == 0:
        return torch.full_like(delta, 0.5), None
    return (0.5 + 0.5 * delta / scale).clamp(0, 1), round(0.5 / scale, 2)


def adversarial(model: Model, image: ImageSource, *, eps: float, target: Target | None = None,
                norm: Literal["linf", "l2"] = "linf", method: Literal["pgd", "fgsm"] = "pgd",
                steps: int = 40, step_size: float | None = None, random_start: bool = False,
                early_stop: bool = True, quantize: bool = True, seed: int = 0,
                size: int | None = None, margin: float = 0.0,
                progress: ProgressFn | None = None) -> Synthesis:
    """Change ``image`` by at most ``eps`` (pixel units in [0, 1]) so the model predicts
    ``target`` (or anything else when it is None); ``extra["perturbation"]`` is the change,
    amplified to be seen. PGD's ``margin``: success needs the target's probability to beat
    every other class by that much."""
    x = on_grid(sized(model, _image(image), size))
    if method == "fgsm":
        result = fgsm(model, x, eps=eps, target=target, norm=norm, quantize=quantize)
    else:
        result = pgd(model, x, eps=eps, target=target, norm=norm, steps=steps, step_size=step_size,
                     random_start=random_start, early_stop=early_stop, quantize=quantize,
                     seed=seed, margin=margin, progress=progress)
    picture, gain = amplified(result.perturbation[0])
    summary: dict[str, Any] = {
        "method": method, "norm": norm, "eps": eps, "eps_255": round(eps * 255, 4),
        "target": _label(model, int(result.target[0])) if result.target is not None else None,
        "original": _label(model, int(result.original_class[0])),
        "original_prob": round(float(result.original_prob[0]), 4),
        "adversarial": _label(model, int(result.new_class[0])),
        "adversarial_prob": round(float(result.new_prob[0]), 4),
        "success": bool(result.success[0]), "steps": int(result.steps[0]),
        "linf": float(result.linf[0]), "linf_255": round(float(result.linf[0]) * 255, 4),
        "l2": round(float(result.l2[0]), 6), "quantized": result.quantized,
        "perturbation_amplified": gain,
        "before": top_classes(model, result.originals), "after": top_classes(model, result.images),
        "saved_png": saved_verdict(model, result.images[0], original=int(result.original_class[0]),
                                   target=int(result.target[0]) if result.target is not None else None),
    }
    line = (f"{summary['original']} -> {summary['adversarial']} p={summary['adversarial_prob']:.3f} "
            f"({'success' if summary['success'] else 'FAILED'}, {summary['steps']} steps, "
            f"linf {summary['linf_255']:.2f}/255, l2 {summary['l2']:.4f})")
    return Synthesis(result.images[0].cpu(), result, summary, line,
                     {"perturbation": picture.cpu()})


def fooling(model: Model, target: Target, *, threshold: float = 0.99, steps: int = 200,
            size: int | None = None, start: str | ImageSource = "noise", lr: float = 0.05,
            seed: int = 0, progress: ProgressFn | None = None) -> Synthesis:
    """An image optimized from noise (or ``start``) until the model gives ``target`` a
    probability of at least ``threshold`` (Nguyen et al. 2015)."""
    begin: Any = start
    if not (isinstance(start, str) and start in ("noise", "zeros")):
        begin = sized(model, _image(start), size)
    result = fool(model, target, threshold=threshold, steps=steps, size=size, start=begin, lr=lr,
                  seed=seed, progress=progress)
    summary = {
        "target": _label(model, int(result.target[0])),
        "confidence": round(float(result.confidence[0]), 6),
        "predicted": _label(model, int(result.predicted[0])), "threshold": threshold,
        "success": bool(result.success[0]), "steps": result.steps,
        "seconds": round(result.seconds, 3),
    }
    line = (f"{summary['target']}: confidence {summary['confidence']:.4f} after {result.steps} "
            f"steps ({'success' if summary['success'] else 'below threshold'})")
    return Synthesis(result.images[0].cpu(), result, summary, line)
