"""Data randomization test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps", Sec. 3.2).

A method that explains what the model learned from its data must give different maps for a model
that learned something else. :func:`random_label_check` fits a DEEP COPY of the model to randomly
permuted labels and compares its maps for the same inputs and target classes (read on the
original) with the original maps, by Spearman rank correlation of the absolute and signed maps
(as :func:`~convscope.methods.evaluation.sanity.cascading_randomization`).

What is retrained, honestly stated:

* ``train="all"``: every parameter of the copy is re-initialized and fitted (mini-batches of
  ``batch_size``, eval-mode forward so BatchNorm statistics stay fixed). This is the paper's test;
  it runs full forward and backward passes on the dataset, so it is meant for small models.
* ``train="head"`` (default): only the final classifier module (the last ``nn.Linear``, or
  ``head=``) is re-initialized and fitted, full batch, on features cached in one no-grad pass.
  Cheap for any network, but weaker: it only asks whether the map depends on what the head learned
  from the labels; the feature extractor keeps what it learned from the true labels. For Grad-CAM
  at the last convolution of a GAP network it hardly matters: the map stays a mix of the same
  rectified activation maps (EfficientNet-Lite0, ``sample:cat`` with a head refitted to 4 permuted
  labels: rank correlation 0.98 with the original map).

``fit_accuracy`` is the copy's accuracy on the permuted labels: near 1 means the random labels
were memorized (the paper trains until they are). Optimization is plain Adam written out here
(torch.optim is not needed for a handful of steps). Shapes: correlations (B,) for ``inputs`` (B,
C, H, W); ``images`` (N, C, H, W) with ``labels`` (N,).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import BadArgument, check_choice, check_positive
from ...model import Model, evaluating, guarded, resolve_layer
from ...model.layers import get_layer, unwrap
from ...types import Target
from ..registry import get_method
from .sanity import compare_maps, method_maps, reinitialize, target_classes

Train = Literal["head", "all"]


@dataclass(frozen=True)
class RandomLabelResult:
    """Maps of a copy fitted to permuted labels, compared with the original maps."""

    method: str
    trained: str
    """"head" (final classifier only, on cached features) or "all" (every parameter)."""
    head: str | None
    fit_accuracy: float
    """Accuracy of the fitted copy on the permuted labels (near 1: the labels were memorized)."""
    spearman_abs: Tensor
    """(B,) rank correlation of the absolute maps with the original's."""
    spearman: Tensor
    """(B,) rank correlation of the signed maps."""


def _last_linear(model: nn.Module) -> str:
    names = [n for n, m in unwrap(model).named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise BadArgument("no nn.Linear classifier found; name the head module with head=...")
    return names[-1]


def _head_features(model: Model, head: nn.Module, images: Tensor, batch_size: int) -> Tensor:
    """The inputs the head module receives for each image (forward pre-hook on our copy)."""
    parts: list[Tensor] = []
    handle = None
    try:
        handle = head.register_forward_pre_hook(lambda _m, args: parts.append(args[0].detach()))
        with guarded(model), torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(images[start:start + batch_size])
    finally:
        if handle is not None:
            handle.remove()
    return torch.cat(parts)


def _adam(p: Tensor, g: Tensor, m: Tensor, v: Tensor, step: int, lr: float) -> None:
    """One Adam update in place (Kingma & Ba 2015, Alg. 1; betas 0.9, 0.999), without torch.optim."""
    m.mul_(0.9).add_(g, alpha=0.1)
    v.mul_(0.999).addcmul_(g, g, value=0.001)
    denom = (v / (1 - 0.999**step)).sqrt_().add_(1e-8)
    p.addcdiv_(m, denom, value=-lr / (1 - 0.9**step))


def random_label_check(
    model: Model,
    inputs: Tensor,
    method: str,
    target: Target = "top1",
    *,
    images: Tensor,
    labels: Tensor,
    layer: str | None = "auto",
    train: Train = "head",
    head: str = "auto",
    iterations: int = 100,
    lr: float = 0.01,
    batch_size: int = 32,
    seed: int = 0,
    **options: Any,
) -> RandomLabelResult:
    """Data randomization test (Adebayo et al. Sec. 3.2) on a deep copy; see the module docstring.

    ``images`` (N, C, H, W) model inputs with class ``labels`` (N,): the labels are permuted with a
    seeded generator, the copy's head (or, with ``train="all"``, the whole copy, re-initialized) is
    fitted to them with Adam (full batch for the head, chunks of ``batch_size`` for "all") and the
    method's maps on ``inputs`` for the original model's ``target`` classes are compared.
    """
    check_choice("train", train, Train)
    check_positive("iterations", iterations, integer=True)
    check_positive("lr", lr)
    labels = torch.as_tensor(labels).long().reshape(-1).to(images.device)
    if images.ndim != 4 or len(images) != len(labels) or labels.unique().numel() < 2:
        raise BadArgument("random labels need images (N, C, H, W) with N labels of at least 2 classes")
    generator = torch.Generator().manual_seed(seed)
    shuffled = labels[torch.randperm(len(labels), generator=generator).to(labels.device)]
    layer = resolve_layer(model, layer or "auto") if get_method(method).needs_layer else None
    idx = target_classes(model, inputs, target)
    reference = method_maps(model, method, layer, inputs, idx, options)
    clone = copy.deepcopy(model)
    head_name = (_last_linear(model) if head == "auto" else head) if train == "head" else None
    modules = [get_layer(clone, head_name)] if head_name else list(unwrap(clone).modules())
    params = [p for m in modules for p in m.parameters(recurse=False)]
    reinitialize([m for m in modules if any(True for _ in m.parameters(recurse=False))], generator)
    features = _head_features(clone, modules[0], images, batch_size) if head_name else images
    forward = modules[0] if head_name else clone
    trained = {id(p) for p in params}
    for p in clone.parameters():  # our copy: only what is fitted tracks gradients
        p.requires_grad_(id(p) in trained)
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    with evaluating(clone), torch.enable_grad():
        for step in range(1, int(iterations) + 1):
            rows = torch.arange(len(features)) if head_name else torch.randperm(
                len(features), generator=generator)[:batch_size]
            rows = rows.to(features.device)
            loss = F.cross_entropy(forward(features[rows]), shuffled[rows])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g, (m, v) in zip(params, grads, moments):
                    _adam(p, g, m, v, step, lr)
    with guarded(clone), torch.no_grad():
        chunks = [forward(features[s:s + batch_size]).argmax(-1) for s in range(0, len(features), batch_size)]
    accuracy = float((torch.cat(chunks) == shuffled).float().mean())
    new = method_maps(clone, method, layer, inputs, idx, options)
    rho_abs, rho, _ = compare_maps(new, reference, False)
    return RandomLabelResult(method, train, head_name, accuracy, rho_abs, rho)
