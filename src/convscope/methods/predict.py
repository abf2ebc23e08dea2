"""Top-k class probabilities: the prediction every explanation starts from."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import BadModel
from ..model import Model, guarded
from ..model.targets import describe_output


def top_k(model: Model, x: Tensor, k: int = 5, *, batch_size: int = 32) -> tuple[Tensor, Tensor]:
    """Softmax probabilities and class indices of the ``k`` best classes, each (B, k).

    Runs in eval mode without autograd, in chunks of ``batch_size`` images.
    """
    probs, indices = [], []
    with guarded(model), torch.inference_mode():
        for chunk in x.split(batch_size):
            logits = model(chunk)
            if not isinstance(logits, Tensor) or logits.ndim != 2:
                raise BadModel(f"model {model.name!r} returns a {describe_output(logits)}, not (batch, "
                               "classes) scores: "
                               "class predictions need a classifier")
            p, i = logits.softmax(-1).topk(min(k, logits.shape[-1]), dim=-1)
            probs.append(p)
            indices.append(i)
    return torch.cat(probs), torch.cat(indices)


def class_map(out: Any) -> Tensor | None:
    """The per-pixel class (B, H, W) of a dense model's output (a (B, C, H, W) tensor, or a
    segmenter's dict with ``"out"``), at the output's resolution; ``None`` for other outputs."""
    dense = out.get("out") if isinstance(out, dict) else out
    if not isinstance(dense, Tensor) or dense.ndim != 4:
        return None
    return dense.argmax(1)
