"""CAM retrofit: give any CNN the GAP + linear head that CAM needs, on a layer of your choice.

CAM (Zhou et al. 2016, Sec. 2) only exists for networks whose logits are a linear function of
the globally average-pooled last feature map. The paper's own recipe for other networks (Sec. 2,
"we remove the fully-connected layers ... and replace them with GAP followed by a fully-connected
softmax layer") is followed here without touching the user's network:

1. the frozen trunk runs up to ``layer`` (``forward_until``: hooks live for one call only, no
   parameter changes, nothing below the layer differentiated), once per image, batched, no grad;
2. each (K, h, w) activation is pooled to K numbers and cached: (N, K);
3. a linear softmax classifier (multinomial logistic regression, L2-regularized, full batch)
   is fitted on the cached features of a training split, standardized for conditioning and
   folded back so the head acts on the raw pooled map;
4. the result is a new :class:`~convscope.model.Model` (trunk up to the layer -> GAP -> linear)
   whose CAM is the paper's, and its accuracy on a held-out split is reported next to the
   original model's on the same images (when the class names are labels of the model).

Shapes: images (N, 3, H, W) in [0, 1] (or a list of (3, H, W) of any sizes), labels (N,) long.
A labelled image folder (one subfolder per class, named by it) becomes these tensors with
``convscope.data.load_folder`` per subfolder; that reading happens above ``methods/``, which
never imports ``data/`` (docs/architecture.md, section 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import BadArgument, BadTarget, check_positive
from ...model import Model, capture, forward_until, guarded, resolve_layer
from ...model.layers import unwrap
from ...types import ProgressFn


class CAMHeadNet(nn.Module):
    """The user's network up to ``layer``, then global average pooling and a linear layer.

    ``trunk`` is the user's network itself (shared, not copied); only the hooks of one
    ``forward_until`` call are attached to it, for the duration of each forward. ``features`` is
    an identity that names the pooled map, so ``layer="auto"`` picks it in the new model.
    """

    def __init__(self, trunk: nn.Module, layer: str, fc: nn.Linear) -> None:
        super().__init__()
        self.trunk = trunk
        self.layer = layer
        self.features = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = fc

    def forward(self, x: Tensor) -> Tensor:
        acts = self.features(forward_until(self.trunk, x, self.layer)[self.layer])
        return self.fc(self.pool(acts).flatten(1))


@dataclass(frozen=True)
class Retrofit:
    """A CAM-ready model and how well its new head classifies held-out images."""

    model: Model
    """Trunk up to ``source_layer`` -> GAP -> linear; use it with CAM at ``layer="auto"``."""
    source_layer: str
    classes: list[str]
    accuracy: float
    """Held-out accuracy of the new head."""
    original_accuracy: float | None
    """The original model's held-out accuracy among the same classes (``None``: the class names
    are not labels of the original model)."""
    n_train: int
    n_test: int


def _stratified_split(labels: Tensor, holdout: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    train, test = [], []
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        n_test = min(idx.numel() - 1, max(1, round(holdout * idx.numel())))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def _original_classes(model: Model, classes: Sequence[str]) -> Tensor | None:
    """Indices of the class names among the model's labels (``a_b`` also as ``a b``), or ``None``."""
    found = []
    for name in classes:
        for candidate in (name, name.replace("_", " ")):
            try:
                found.append(model.class_index(candidate))
                break
            except BadTarget:
                continue
        else:
            return None
    return torch.tensor(found)


def _fit_linear(feats: Tensor, labels: Tensor, classes: int, steps: int, weight_decay: float,
                progress: ProgressFn | None, done: int, total: int) -> nn.Linear:
    """Multinomial logistic regression on standardized features, folded back to raw features."""
    mean, std = feats.mean(0), feats.std(0).clamp(min=1e-6)
    z = (feats - mean) / std
    fc = nn.Linear(feats.shape[1], classes)
    nn.init.zeros_(fc.weight)
    nn.init.zeros_(fc.bias)
    opt = torch.optim.Adam(fc.parameters(), lr=0.05)
    with torch.enable_grad():
        for step in range(steps):
            logits = fc(z)
            # Cross-entropy spelled out: F.cross_entropy's log_softmax enters the CPU thread pool
            # even for a (N, classes) this small, which costs milliseconds per step on busy cores.
            nll = torch.logsumexp(logits, 1) - logits.gather(1, labels[:, None])[:, 0]
            loss = nll.mean() + weight_decay * fc.weight.square().sum()
            opt.zero_grad()
            loss.backward()  # the new head's own parameters only: features are cached tensors
            opt.step()
            if progress is not None:
                progress(done + step + 1, total)
    with torch.no_grad():
        weight = fc.weight / std
        bias = fc.bias - weight @ mean
    head = nn.Linear(feats.shape[1], classes)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return head.requires_grad_(False)


def fit_cam_head(
    model: Model,
    images: Tensor | Sequence[Tensor],
    labels: Tensor,
    classes: Sequence[str],
    *,
    layer: str = "auto",
    holdout: float = 0.2,
    steps: int = 200,
    weight_decay: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> Retrofit:
    """Fit a GAP + linear head on ``layer`` of a frozen ``model``; return the CAM-ready model.

    The model is left exactly as it was: it runs in eval mode with frozen parameters under
    :func:`~convscope.model.guarded`, hooks live for one forward each, and its features are
    computed once, batched, without gradients (see the module docstring for the steps).

    Args:
        images: (N, 3, H, W) in [0, 1] or a list of (3, H, W) images of any sizes.
        labels: (N,) class index of each image into ``classes``.
        holdout: fraction of each class kept out of training to measure accuracy.
        steps: full-batch optimizer steps of the head (it trains on cached features: fast).
        weight_decay: L2 penalty on the (standardized) head weights.
        progress: ``progress(done, total)`` after each feature batch and each training step.
    """
    n = len(images)
    labels = torch.as_tensor(labels).long().cpu()
    if labels.shape != (n,):
        raise BadArgument(f"labels of shape {tuple(labels.shape)} for {n} images")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
        raise BadArgument(f"labels must index the {len(classes)} classes; got values "
                          f"{int(labels.min())}..{int(labels.max())}")
    counts = torch.bincount(labels, minlength=len(classes))
    if len(classes) < 2 or counts.numel() != len(classes) or int(counts.min()) < 2:
        raise BadArgument("CAM retrofit needs at least 2 classes with at least 2 images each; "
                          f"got {dict(zip(classes, counts.tolist()))}")
    if not 0 < holdout < 1:
        raise BadArgument(f"holdout={holdout!r}: a fraction in (0, 1)")
    check_positive("steps", steps, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    source = resolve_layer(model, layer)
    batches = range(0, n, batch_size)
    total, done = len(batches) + steps, 0
    feats, logits = [], []
    with guarded(model), torch.no_grad():
        for start in batches:
            x = model.preprocess(images[start:start + batch_size])
            with capture(model, source) as record:
                logits.append(model(x).cpu())
            acts = record[source]
            if acts.ndim != 4:
                raise BadArgument(f"layer {source!r} gives shape {tuple(acts.shape)}; choose a "
                                  "convolutional layer with a (B, K, h, w) output")
            feats.append(acts.mean((2, 3)).cpu())
            done += 1
            if progress is not None:
                progress(done, total)
    pooled, out = torch.cat(feats), torch.cat(logits)
    train, test = _stratified_split(labels, holdout, torch.Generator().manual_seed(seed))
    head = _fit_linear(pooled[train], labels[train], len(classes), steps, weight_decay,
                       progress, done, total)
    with torch.no_grad():
        accuracy = float((head(pooled[test]).argmax(1) == labels[test]).float().mean())
    original = _original_classes(model, classes)
    original_accuracy = None
    if original is not None and out.ndim == 2:
        picked = out[test][:, original].argmax(1)
        original_accuracy = float((picked == labels[test]).float().mean())
    cam_model = cam_ready_model(model, source, head, classes)
    return Retrofit(cam_model, source, list(classes), accuracy, original_accuracy,
                    int(train.numel()), int(test.numel()))


def cam_ready_model(model: Model, layer: str, fc: nn.Linear, classes: Sequence[str]) -> Model:
    """``model``'s network up to ``layer`` -> GAP -> ``fc``, with the classes as labels."""
    net = CAMHeadNet(unwrap(model), layer, fc.to(model.device))
    return Model(net, preprocess=model.spec, labels=list(classes), name=f"{model.name}+cam@{layer}")

