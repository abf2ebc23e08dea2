"""Fast-style checkpoints: a file that loads with ``torch.load(weights_only=True)`` and nothing else.

Layout (plain dicts, strings, ints and tensors only, so no pickle code runs on load)::

    {"format": "convscope.fast_style", "version": 1,
     "config": {"width": int, "blocks": int},
     "state_dict": {name: tensor},
     "train": {"step": int, "adam_m": [tensor], "adam_v": [tensor], "adam_t": int,
               "generator": uint8 tensor}}          # optional: what a resumed run needs

Anything else (a missing file, another format, a truncated file, a state dict that does not fit)
is refused with one :class:`~convscope.errors.BadModel` line naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ...errors import BadModel
from .transformer import FastStyleNet

FORMAT, VERSION = "convscope.fast_style", 1


@dataclass
class TrainState:
    """A network plus what resuming its training needs (step, Adam moments, random state)."""

    net: FastStyleNet
    step: int = 0
    adam_m: list[Tensor] = field(default_factory=list)
    adam_v: list[Tensor] = field(default_factory=list)
    adam_t: int = 0
    generator: Tensor | None = None


def save_fast_style(net: FastStyleNet, path: str | Path, *, train: TrainState | None = None) -> Path:
    """Write ``net`` (and, with ``train``, its training state) to ``path``; atomic (temp + rename)."""
    path = Path(path)
    data: dict[str, object] = {
        "format": FORMAT, "version": VERSION, "config": dict(net.config),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    if train is not None:
        gen = train.generator if train.generator is not None else torch.empty(0, dtype=torch.uint8)
        data["train"] = {
            "step": int(train.step), "adam_t": int(train.adam_t),
            "adam_m": [m.detach().cpu() for m in train.adam_m],
            "adam_v": [v.detach().cpu() for v in train.adam_v],
            "generator": gen,
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)
    return path


def _read(path: str | Path) -> Mapping[str, object]:
    shown = str(path)
    if not Path(path).is_file():
        raise BadModel(f"fast-style network {shown!r} does not exist; train one with "
                       "`convscope fast-style train`")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or unsafe files
        raise BadModel(f"fast-style network {shown!r} cannot be read safely ({type(err).__name__}); "
                       "is it a file written by train_fast_style?") from None
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise BadModel(f"{shown!r} is not a fast-style network (no {FORMAT!r} marker); train one with "
                       "`convscope fast-style train`")
    if data.get("version") != VERSION:
        raise BadModel(f"fast-style network {shown!r} has format version {data.get('version')!r}; "
                       f"this convscope reads version {VERSION}")
    return data


def _net(data: Mapping[str, object], shown: str) -> FastStyleNet:
    config, state = data.get("config"), data.get("state_dict")
    if not isinstance(config, Mapping) or not isinstance(state, Mapping):
        raise BadModel(f"fast-style network {shown!r} lacks its config or state dict")
    width, blocks = config.get("width"), config.get("blocks")
    if not isinstance(width, int) or not isinstance(blocks, int) or width < 1 or blocks < 0:
        raise BadModel(f"fast-style network {shown!r} has a bad config {dict(config)!r}")
    net = FastStyleNet(width, blocks)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        first = str(err).splitlines()[0]
        raise BadModel(f"fast-style network {shown!r}: weights do not fit width={width}, "
                       f"blocks={blocks} ({first})") from None
    return net


def load_fast_style(path: str | Path, *, device: str | torch.device | None = None) -> FastStyleNet:
    """The trained :class:`FastStyleNet` in ``path`` (``weights_only=True``), on ``device`` (default CPU)."""
    net = _net(_read(path), str(path))
    return net.to(device) if device is not None else net


def load_train_state(path: str | Path) -> TrainState:
    """Network and training state of a checkpoint, on the CPU.

    A file without a training section (only a network) resumes with fresh optimizer moments.
    """
    data = _read(path)
    net = _net(data, str(path))
    train = data.get("train")
    if train is None:
        return TrainState(net)
    shapes = [p.shape for p in net.parameters()]

    def tensors(key: str) -> list[Tensor] | None:
        value = train.get(key) if isinstance(train, Mapping) else None
        if not isinstance(value, list) or not all(isinstance(t, Tensor) for t in value):
            return None
        return value if [t.shape for t in value] == shapes else None

    m, v = tensors("adam_m"), tensors("adam_v")
    step = train.get("step") if isinstance(train, Mapping) else None
    t = train.get("adam_t") if isinstance(train, Mapping) else None
    gen = train.get("generator") if isinstance(train, Mapping) else None
    if m is None or v is None or not isinstance(step, int) or not isinstance(t, int) \
            or not isinstance(gen, Tensor) or step < 0:
        raise BadModel(f"fast-style checkpoint {str(path)!r} has a damaged training section; "
                       "train from scratch or load it with load_fast_style")
    return TrainState(net, step, m, v, t, gen if gen.numel() else None)
