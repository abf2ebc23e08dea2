"""A content hash of a model's weights: what a result or an atlas was computed with."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def weights_digest(module: nn.Module, *parts: str) -> str:
    """A hash of ``parts`` (a spec, the preprocessing) and every parameter and buffer (name,
    dtype, shape, bytes): equal only for the same weights."""
    digest = hashlib.sha256("\0".join(parts).encode())
    with torch.no_grad():
        for name, tensor in list(module.state_dict().items()):
            t = tensor.detach().cpu().contiguous().reshape(-1)  # 0-dim buffers cannot be viewed as bytes
            digest.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
