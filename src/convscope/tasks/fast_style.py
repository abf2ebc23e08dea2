"""Fast style transfer as tasks: the content images a network trains on, training a network with
the defaults the CLI and the web share, and images stylized by a trained network (optionally
resized first). The training loop itself is :func:`convscope.methods.synthesis.train_fast_style`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import load_folder, load_image
from ..data.samples import SAMPLES
from ..errors import check_positive
from ..methods.synthesis.fast_style import FastStyleNet, load_fast_style, stylize, train_fast_style
from ..types import ProgressFn

DEFAULT_WIDTH, DEFAULT_BLOCKS = 16, 3
"""A small network (16 base channels, 3 residual blocks) trains in minutes on a CPU; the method's
own defaults (32, 5) are the paper's."""


def sample_photos() -> list[str]:
    """The samples that are photographs (not textures or binary silhouettes)."""
    return [n for n, s in SAMPLES.items() if "photo" in s.description or "portrait" in s.description]


def content_images(sources: Sequence[str]) -> list[Tensor]:
    """Folders, files, ``sample:NAME``, or ``samples`` (every sample photo) as images."""
    images: list[Tensor] = []
    for src in sources:
        if src == "samples":
            images += [load_image(f"sample:{n}") for n in sample_photos()]
        elif not src.startswith("sample:") and Path(src).is_dir():
            images += [img for _, img in load_folder(src)]
        else:
            images.append(load_image(src))
    return images


def longer_side(image: Tensor, size: int | None) -> Tensor:
    """``image`` (3, H, W) resized so its longer side is ``size`` (None: unchanged)."""
    if size is None:
        return image
    h, w = image.shape[-2:]
    scale = size / max(h, w)
    new = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image[None], size=new, mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def apply_style(net: FastStyleNet | str | Path, sources: Sequence[str | Path | Tensor], *,
                size: int | None = None, batch_size: int = 4,
                device: str | torch.device | None = None) -> list[Tensor]:
    """Each image stylized in one forward pass of ``net`` (a network, or a file written by
    training, loaded onto ``device``) after resizing so its longer side is ``size``."""
    if size is not None:
        check_positive("size", size, integer=True)
    if not isinstance(net, FastStyleNet):
        net = load_fast_style(net, device=device)
    images = [longer_side(src if isinstance(src, Tensor) else load_image(src), size)
              for src in sources]
    with torch.no_grad():
        styled = stylize(net, images, batch_size=batch_size)
    return list(styled)


@dataclass
class Trained:
    """A trained network and what to say about its training."""

    net: FastStyleNet
    summary: dict[str, Any]
    """``content_images``, ``steps``, ``steps_run``, ``width``, ``blocks``, ``loss_first``,
    ``loss_last10`` (mean loss of the last ten steps; None when no step ran) and ``seconds``."""


def train(model: nn.Module, style: Tensor, contents: Sequence[Tensor], *, steps: int = 300,
          size: int = 128, batch: int = 4, style_weight: float = 3.0, content_weight: float = 1.0,
          tv_weight: float = 0.0, style_size: int | None = None, lr: float = 1e-3,
          width: int | None = None, blocks: int | None = None, seed: int = 0,
          checkpoint_every: int = 0, out: str | Path | None = None, resume: bool = False,
          progress: ProgressFn | None = None) -> Trained:
    """Train a network on ``contents`` in the style of ``style`` (``model`` is the frozen feature
    network); a new network gets ``DEFAULT_WIDTH`` x ``DEFAULT_BLOCKS`` unless told otherwise, a
    resumed one (``resume``: continue the training saved in ``out``) keeps its own."""
    losses: list[float] = []
    start = time.perf_counter()
    if not resume:
        width = DEFAULT_WIDTH if width is None else width
        blocks = DEFAULT_BLOCKS if blocks is None else blocks
    net = train_fast_style(
        style, list(contents), model=model, style_weight=style_weight,
        content_weight=content_weight, tv_weight=tv_weight, steps=steps, batch_size=batch,
        size=size, style_size=style_size, lr=lr, width=width, blocks=blocks, seed=seed,
        checkpoint_every=checkpoint_every, checkpoint_path=out,
        resume_from=out if resume else None, progress=progress,
        callback=lambda _step, loss: losses.append(float(loss.mean())))
    last = losses[-10:]
    summary = {"content_images": len(contents), "steps": steps, "steps_run": len(losses),
               **net.config, "loss_first": round(losses[0], 5) if losses else None,
               "loss_last10": round(sum(last) / len(last), 5) if last else None,
               "seconds": round(time.perf_counter() - start, 2)}
    return Trained(net, summary)
