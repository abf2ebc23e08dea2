"""The floor every method is compared with: the bare model's forward and forward+backward.

Forward runs under ``inference_mode``; forward+backward takes the input gradient of the top
logit with ``autograd.grad`` (what gradient methods need), parameters frozen.
"""

from __future__ import annotations

import torch

from convscope.model import Model, guarded, select

from .timing import Measurement, measure


def forward_backward(model: Model, x: torch.Tensor) -> None:
    """The input gradient of the top logit: the cost of one gradient-method pass."""
    xg = x.clone().requires_grad_(True)
    torch.autograd.grad(select(model(xg), "top1").sum(), xg)


def truncated_pass(model: Model, x: torch.Tensor, blocks: int, channel: int | None = None) -> None:
    """Input gradient of the mean activation (of one ``channel``, or all) after ``blocks`` blocks
    of EfficientNet-Lite0: the least work an objective on that block's output needs."""
    net = model.net
    xg = x.clone().requires_grad_(True)
    h = net._relu_stem(net._bn0(net._conv_stem(xg)))
    for block in net._blocks[:blocks]:
        h = block(h)
    torch.autograd.grad((h if channel is None else h[:, channel]).mean(), xg)


def floor_measurements(model: Model, device: torch.device,
                       batches: tuple[int, ...] = (1, 32)) -> dict[str, Measurement]:
    out: dict[str, Measurement] = {}
    gen = torch.Generator().manual_seed(0)
    for batch in batches:
        x = torch.rand(batch, 3, *model.input_size, generator=gen).to(device)
        x = model.normalize(x)

        def forward(x: torch.Tensor = x) -> None:
            with torch.inference_mode():
                model(x)

        with guarded(model):
            out[f"forward b{batch}"] = measure(f"forward, batch {batch}", forward,
                                               images=batch, device=device)
            out[f"forward+backward b{batch}"] = measure(
                f"forward+backward, batch {batch}", lambda x=x: forward_backward(model, x),
                images=batch, device=device)
    return out
