"""Content hashes of a model's weights (what a result or an atlas was computed with) and of one
tensor (the pixels a cached result belongs to)."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn


def weights_digest(module: nn.Module, *parts: str) -> str:
    """A hash of ``parts`` (a spec, the preprocessing) and every parameter and buffer (name,
    dtype, shape, bytes): equal only for the same weights."""
    digest = hashlib.sha256("\0".join(parts).encode())
    with torch.no_grad():
        for name, tensor in list(module.state_dict().items()):
            digest.update(f"{name}:".encode())
            _add(digest, tensor)
    return digest.hexdigest()


def tensor_digest(tensor: Tensor) -> str:
    """A hash of one tensor's dtype, shape and values."""
    digest = hashlib.sha256()
    _add(digest, tensor)
    return digest.hexdigest()[:32]


def _add(digest: hashlib._Hash, tensor: Tensor) -> None:
    t = tensor.detach().cpu().contiguous().reshape(-1)  # 0-dim buffers cannot be viewed as bytes
    digest.update(f"{t.dtype}:{tuple(tensor.shape)}".encode())
    digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
