"""Top-k class probabilities: the prediction every explanation starts from."""

from __future__ import annotations

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
