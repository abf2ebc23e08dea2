"""Fast (feed-forward) style transfer: train a network once per style, then stylize in one pass.

Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution". The transformation network ``f_W`` (:class:`FastStyleNet`) is trained on
content images ``y_c`` to minimize the perceptual loss (Eq. 5-6 with Sec. 3.3's TV regularizer)

    L(y_hat) = content_weight * l_feat(y_hat, y_c) + style_weight * sum_j l_style^j(y_hat, y_s)
               + tv_weight * TV(y_hat),          y_hat = f_W(y_c)   (B, 3, S, S) in [0, 1]

where ``l_feat`` is the squared feature difference at one content layer (Eq. 2) and ``l_style``
the squared difference of normalized Gram matrices (Eq. 3-4), both from
:mod:`~convscope.methods.synthesis.losses`, read off a frozen classification network (the
embedded EfficientNet-Lite0 by default). The style's Gram targets are computed once; every step
draws ``batch_size`` random ``size x size`` crops of the content images with a seeded
``torch.Generator`` and takes one Adam step on the transformer's parameters only (gradients by
``autograd.grad``; the feature network runs under ``guarded``, so its parameters, flags and
``.grad`` stay as they were).

Checkpoints (:func:`save_fast_style`) hold plain tensors, dicts, strings and numbers, so they load
with ``torch.load(weights_only=True)``; with the optimizer's moments and the generator's state
they let a resumed run continue bitwise as if it had never stopped (on CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import BadArgument, BadImage
from ...model import load_model
from ...model.device import device_of
from ...types import ProgressFn
from ..features.optimize import Adam, tv_penalty
from .checkpoint import TrainState, load_fast_style, load_train_state, save_fast_style
from .losses import FeatureExtractor, content_loss, default_style_layers, gram_targets, style_loss
from .transformer import FastStyleNet, pad_to_multiple

StepCallback = Callable[[int, Tensor], None]
"""``callback(step, losses)`` after each step: steps done so far, this batch's losses (B,)."""

__all__ = ["FastStyleNet", "PerceptualLoss", "load_fast_style", "save_fast_style", "stylize",
           "train_fast_style"]


def _fit(image: Tensor, size: int) -> Tensor:
    """(3, H, W) resized so its shorter side lies in [size, 2 * size] (area-averaged when shrinking)."""
    h, w = image.shape[-2:]
    short = min(h, w)
    target = min(max(short, size), 2 * size)
    if target == short:
        return image
    scale = target / short
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    return F.interpolate(image[None], size=new, mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def _content_list(content_images: Tensor | Iterable[Tensor | tuple[object, Tensor]]) -> list[Tensor]:
    """Content images as a list of (3, H, W) float tensors; ``load_folder``'s (path, image) pairs too."""
    if isinstance(content_images, Tensor):
        items = [content_images] if content_images.ndim == 3 else list(content_images)
    else:
        items = [c[-1] if isinstance(c, tuple) else c for c in content_images]
    if not items:
        raise BadImage("no content images given; pass at least one (3, H, W) image")
    for img in items:
        if not isinstance(img, Tensor) or img.ndim != 3 or img.shape[0] != 3:
            got = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
            raise BadImage(f"content image of shape {got}: expected (3, H, W) in [0, 1]")
    return [img.detach().float().cpu() for img in items]


def _random_crops(images: Sequence[Tensor], count: int, size: int, generator: torch.Generator) -> Tensor:
    """``count`` random ``size x size`` crops, (count, 3, size, size); all draws from ``generator``."""
    crops = []
    for _ in range(count):
        img = images[int(torch.randint(len(images), (1,), generator=generator))]
        h, w = img.shape[-2:]
        top = int(torch.randint(h - size + 1, (1,), generator=generator))
        left = int(torch.randint(w - size + 1, (1,), generator=generator))
        crops.append(img[:, top:top + size, left:left + size])
    return torch.stack(crops)


class PerceptualLoss:
    """Johnson's training loss, per image (B,): weighted content + style + total variation.

    ``loss(outputs, contents)``: ``outputs`` the stylized images, ``contents`` the images they
    were made from, both (B, 3, H, W) in [0, 1] on the model's device. The style targets are the
    Gram matrices of ``style_image`` (resized so its shorter side is ``style_size``), computed
    once here; each style layer's term is divided by its target's mean square (a relative
    error), so no layer dominates by the mere size of its activations. :meth:`parts` returns
    the three unweighted terms.
    """

    def __init__(self, model: nn.Module, style_image: Tensor, *, style_layers: Sequence[str],
                 content_layer: str, style_weight: float, content_weight: float, tv_weight: float,
                 style_size: int) -> None:
        if style_image.ndim != 3 or style_image.shape[0] != 3:
            raise BadImage(f"style image of shape {tuple(style_image.shape)}: expected (3, H, W)")
        if min(style_weight, content_weight, tv_weight) < 0:
            raise BadArgument("style_weight, content_weight and tv_weight must be >= 0")
        self.weights = (float(content_weight), float(style_weight), float(tv_weight))
        self.style_layers, self.content_layer = tuple(style_layers), content_layer
        self.extract = FeatureExtractor(model, [*self.style_layers, content_layer])
        self.extract_content = FeatureExtractor(model, content_layer)
        device = device_of(model)
        style = _fit(style_image.detach().float().cpu(), style_size)[None].to(device)
        with torch.no_grad():
            self.targets = gram_targets(FeatureExtractor(model, self.style_layers)(style))
        # Each layer's squared Gram error relative to its target's mean square: Gram entries of
        # EfficientNet's stem are ~1e5 times those of block 9, so equal weights would see the
        # stem only. Relative errors give every layer an equal say, as VGG layers roughly have.
        self.layer_weights = {n: 1.0 / float(t.pow(2).mean().clamp_min(1e-20))
                              for n, t in self.targets.items()}

    def parts(self, outputs: Tensor, contents: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            target = self.extract_content(contents)[self.content_layer]
        feats = self.extract(outputs)
        return {"content": content_loss(feats[self.content_layer], target),
                "style": style_loss(feats, self.targets, self.layer_weights), "tv": tv_penalty(outputs)}

    def __call__(self, outputs: Tensor, contents: Tensor) -> Tensor:
        parts = self.parts(outputs, contents)
        wc, ws, wt = self.weights
        return wc * parts["content"] + ws * parts["style"] + wt * parts["tv"]


def _new_net(width: int | None, blocks: int | None, seed: int) -> FastStyleNet:
    """A freshly initialized net from ``seed``, without touching the global RNG's state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FastStyleNet(32 if width is None else width, 5 if blocks is None else blocks)


def train_fast_style(
    style_image: Tensor,
    content_images: Tensor | Iterable[Tensor | tuple[object, Tensor]],
    *,
    model: nn.Module | None = None,
    style_layers: Sequence[str] | None = None,
    content_layer: str | None = None,
    style_weight: float = 3.0,
    content_weight: float = 1.0,
    tv_weight: float = 0.0,
    steps: int = 300,
    batch_size: int = 4,
    size: int = 128,
    style_size: int | None = None,
    lr: float = 1e-3,
    width: int | None = None,
    blocks: int | None = None,
    seed: int = 0,
    checkpoint_every: int = 0,
    checkpoint_path: str | Path | None = None,
    resume_from: str | Path | None = None,
    progress: ProgressFn | None = None,
    callback: StepCallback | None = None,
) -> FastStyleNet:
    """Train a :class:`FastStyleNet` (``width`` base channels, default 32; ``blocks`` residual
    blocks, default 5) to paint ``content_images`` in the style of ``style_image``.

    ``model`` is the frozen feature network (default: the embedded EfficientNet-Lite0; images in
    [0, 1] go through its own normalization); ``style_layers``/``content_layer`` default to
    :func:`~.losses.default_style_layers`. Content images (a tensor, a list of (3, H, W) tensors
    or ``load_folder``'s (path, image) pairs) are resized so their shorter side lies in
    [size, 2 * size]; each of the ``steps`` steps trains on ``batch_size`` random ``size`` crops.
    The style image is resized so its shorter side is ``style_size`` (default ``2 * size``).

    ``steps`` counts the total, also across a resume: ``resume_from`` a checkpoint at step k runs
    steps k+1 .. ``steps`` with the checkpoint's network, optimizer moments and random state (the
    same content images and options must be given). Every ``checkpoint_every`` steps and at the
    end the state is saved to ``checkpoint_path`` (atomically). The net is on ``model``'s device.
    """
    if steps < 0 or batch_size < 1 or size < 8 or lr <= 0 or checkpoint_every < 0:
        raise BadArgument(f"steps={steps}, batch_size={batch_size}, size={size}, lr={lr}, checkpoint_"
                          f"every={checkpoint_every}: need steps >= 0, batch_size >= 1, size >= 8, "
                          "lr > 0, checkpoint_every >= 0")
    if checkpoint_every and checkpoint_path is None:
        raise BadArgument("checkpoint_every needs a checkpoint_path to write to")
    model = load_model() if model is None else model
    if style_layers is None or content_layer is None:
        defaults = default_style_layers(model)
        style_layers = defaults.style if style_layers is None else style_layers
        content_layer = defaults.content if content_layer is None else content_layer
    device = device_of(model)
    criterion = PerceptualLoss(model, style_image, style_layers=style_layers, content_layer=content_layer,
                               style_weight=style_weight, content_weight=content_weight,
                               tv_weight=tv_weight, style_size=style_size or 2 * size)
    contents = [_fit(img, size) for img in _content_list(content_images)]
    generator = torch.Generator().manual_seed(seed)
    if resume_from is not None:
        state = load_train_state(resume_from)
        for name, given, saved in (("width", width, state.net.config["width"]),
                                   ("blocks", blocks, state.net.config["blocks"])):
            if given is not None and given != saved:
                raise BadArgument(f"{name}={given} but the checkpoint {str(resume_from)!r} was trained "
                                  f"with {name}={saved}; leave {name} out to resume it")
        net, done = state.net.to(device), state.step
        params = list(net.parameters())
        adam = Adam(params, lr)
        if state.adam_m:
            adam.m = [m.to(device) for m in state.adam_m]
            adam.v = [v.to(device) for v in state.adam_v]
            adam.t = state.adam_t
        if state.generator is not None:
            generator.set_state(state.generator)
    else:
        net, done = _new_net(width, blocks, seed).to(device), 0
        params = list(net.parameters())
        adam = Adam(params, lr)

    def save(step: int) -> None:
        if checkpoint_path is not None:
            save_fast_style(net, checkpoint_path, train=TrainState(
                net, step, list(adam.m), list(adam.v), adam.t, generator.get_state()))

    with torch.enable_grad():
        for step in range(done, steps):
            batch = _random_crops(contents, batch_size, size, generator).to(device)
            losses = criterion(net(batch), batch)
            adam.step(torch.autograd.grad(losses.mean(), params))
            if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                save(step + 1)
            if callback is not None:
                callback(step + 1, losses.detach())
            if progress is not None:
                progress(step + 1, steps)
    save(max(steps, done))
    return net


def stylize(net: FastStyleNet, images: Tensor | Sequence[Tensor], *,
            batch_size: int = 4) -> Tensor | list[Tensor]:
    """Apply a trained net to images of any size, in batches, on the net's device.

    ``images``: (3, H, W), (B, 3, H, W) or a list of (3, H, W) of different sizes, in [0, 1].
    Each is replicate-padded to a multiple of 4 (at least 8) and cropped back, so the output has
    the input's shape (a list for a list), in [0, 1], on the input's device.
    """
    if batch_size < 1:
        raise BadArgument(f"batch_size={batch_size}: need at least 1")
    if isinstance(images, Tensor):
        if images.ndim == 3:
            return _stylize_batch(net, images[None], batch_size)[0]
        if images.ndim != 4 or images.shape[1] != 3:
            raise BadImage(f"images of shape {tuple(images.shape)}: expected (3, H, W) or (B, 3, H, W)")
        return _stylize_batch(net, images, batch_size)
    items = list(images)
    for img in items:
        if not isinstance(img, Tensor) or img.ndim != 3:
            got = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
            raise BadImage(f"image of shape {got}: expected (3, H, W) in [0, 1]")
    groups: dict[tuple[tuple[int, ...], str], list[int]] = {}  # equal sizes share batches
    for i, img in enumerate(items):
        groups.setdefault((tuple(img.shape), str(img.device)), []).append(i)
    out: list[Tensor] = [items[0]] * len(items)
    for indices in groups.values():
        batch = _stylize_batch(net, torch.stack([items[i] for i in indices]), batch_size)
        for i, styled in zip(indices, batch):
            out[i] = styled
    return out


def _stylize_batch(net: FastStyleNet, images: Tensor, batch_size: int) -> Tensor:
    if images.shape[1] != 3:
        raise BadImage(f"images of shape {tuple(images.shape)}: expected 3 colour channels")
    device = device_of(net)
    out = []
    with torch.inference_mode():
        for chunk in images.split(batch_size):
            padded, h, w = pad_to_multiple(chunk.to(device, torch.float32))
            out.append(net(padded)[:, :, :h, :w].to(images.device))
    return torch.cat(out)
