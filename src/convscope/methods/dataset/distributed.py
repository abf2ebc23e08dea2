"""The few collectives a scan needs under ``torchrun`` (gloo on CPU, NCCL on CUDA).

A scan is sharded by image index: in every chunk, process ``rank`` takes indices
``start + rank, start + rank + world, ...``. Each process reduces its share to a partial top-k
and embedding rows; the partial results are gathered as Python objects (CPU tensors, one chunk
at a time, so memory stays bounded) and rank 0 merges them exactly (:meth:`TopK.combine`) and
writes the atlas. Nothing here runs when ``WORLD_SIZE`` is 1 or unset.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def env_world_size() -> int:
    """Processes launched together (``WORLD_SIZE`` set by torchrun), 1 when run alone."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_from_env(device: torch.device) -> bool:
    """Join the process group described by torchrun's environment; True if this call did it."""
    if env_world_size() <= 1 or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return True


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (a list of one when not distributed)."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(initialized_here: bool) -> None:
    if initialized_here and dist.is_initialized():
        dist.destroy_process_group()
