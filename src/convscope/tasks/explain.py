"""``explain()``: one call from images to attribution maps, for every registered method.

This module sits above ``methods`` and ``render`` (like the CLI), so an :class:`Explanation` can
both hold tensors and draw itself. The method runs on the model's device; maps come back at input
resolution (layer maps are upsampled bilinearly) next to the raw layer-resolution map.

``explain()`` costs what the method costs: the target and its score are read from the logits the
method computed on the unchanged inputs (:attr:`Attribution.logits`); only a method that never
ran the model on them as they are (the forward-only methods run a folded copy) gets one extra
forward, among its hundreds. Method objects are reused from one call to the next (see
:class:`_Recent`).
"""

from __future__ import annotations

import io
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ..errors import BadArgument, ConvscopeError
from ..methods.attribution.base import method_failed
from ..methods.attribution.cam_core import resize_map
from ..methods.evaluation.localization import Localization, localize
from ..methods.registry import build_method, get_method
from ..model import Model, guarded, select, target_indices
from ..model.structured import ModelOutput, prepare
from ..model.targets import bind_target, describe_target, explained, is_target_object, reads_output
from ..model.wrapped import Framing
from ..render import map_levels, overlay, png_bytes, save_png
from ..render.notebook import MAX_SAMPLES, TILE, figure_html, sample_grid, table_html
from ..render.video import AnimationFormat, animation_bytes, clip_overlays, frame_strip, upscaled
from ..types import Target
from .inputs import Images, as_images, is_model_input, model_inputs, takes_clips


def overlay_options(signed: bool, options: dict[str, Any]) -> dict[str, Any]:
    """Signed maps diverge around zero and sum their channels; unsigned ones take the max."""
    return {"mode": "signed" if signed else "unsigned", "reduce": "sum" if signed else "max", **options}


def photo_overlay(image: Tensor, box: Sequence[float], values: Tensor, max_side: int | None = None,
                  **options: Any) -> Image.Image:
    """A ``(C,H,W)`` map of the model's input over the ``(3,H,W)`` photo it came from, ``box``
    the part of the photo the model saw; the photo shrunk to at most ``max_side`` pixels first."""
    height, width = image.shape[-2:]
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        image = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True,
                              align_corners=False)[0].clamp(0, 1)
        sy, sx = size[0] / height, size[1] / width
        box = (box[0] * sy, box[1] * sx, box[2] * sy, box[3] * sx)
    return overlay(image, values, box=box, **options)


@dataclass
class Explanation:
    """Attribution maps for a batch, with what is needed to read and draw them."""

    method: str
    values: Tensor | tuple[Tensor, ...]
    """(B, C, H, W) at input resolution; C is 1, or the input channels for per-pixel methods.
    (B, C, T, H, W) for video clips (layer maps upsampled trilinearly).
    For model inputs that are not one image batch: the attributions of each input (a tuple for
    several inputs), shaped as the method returns them."""
    raw: Tensor | tuple[Tensor, ...]
    """The method's own output (layer resolution for CAM-family methods)."""
    images: Tensor | None
    """(B, 3, H, W) in [0, 1]: the images as the model saw them (resized); (B, 3, T, H, W)
    for clips; ``None`` for inputs that are not images (nothing to draw on)."""
    targets: Tensor | None
    """(B,) class index explained per sample; ``None`` for a callable target."""
    target_labels: list[str] | None
    scores: Tensor
    """(B,) the target's score (logit) on each input."""
    layer: str | None
    seconds: float
    signed: bool
    options: dict[str, Any] = field(default_factory=dict)
    layer_reason: str | None = None
    """Why ``layer`` was read (``"auto"``'s choice, or that the caller named it)."""
    explained: list[str] | None = None
    """Per sample, what a target that picks a part of the output chose, in words ("detection
    #2: 7 0.81 at (34, 50, 120, 200), IoU 0.93 with the asked box"; "region: class 3 '3', mean
    over 412 px of box (10, 20, 60, 70): 5.1"); ``None`` for class and callable targets."""
    framings: list[Framing] | None = None
    """Per sample, the original image and the box of it the model saw (``None`` when the
    inputs were a ready model-input batch): overlays are drawn on the original."""

    def __len__(self) -> int:
        return _first(self.values).shape[0]

    @property
    def maps(self) -> Tensor:
        """The (B, C, H, W) maps of an image explanation (``values``; refused for model inputs
        that are not images, whose ``values`` may be a tuple)."""
        return self._pictures()[1]

    def _pictures(self) -> tuple[Tensor, Tensor]:
        if self.images is None or not isinstance(self.values, Tensor):
            raise BadArgument(f"this {self.method} explanation is of model inputs, not images: there is "
                              "no picture to draw; read .values (one tensor per input)")
        return self.images, self.values

    def overlay(self, index: int = 0, *, max_side: int | None = None, **options: Any) -> Image.Image:
        """Sample ``index``'s map over its image (options as :func:`convscope.render.overlay`):
        over the original photo at its own size when the explanation loaded it (shrunk to at
        most ``max_side`` pixels when given: much faster for a large photo), else over the
        model's input."""
        images, values = self._pictures()
        chosen = overlay_options(self.signed, options)
        if self.is_clip:
            return self.strip(index, **options)
        if self.framings is None:
            return overlay(images[index], values[index], **chosen)
        framing = self.framings[index]
        return photo_overlay(framing.image, framing.box, values[index], max_side, **chosen)

    @property
    def is_clip(self) -> bool:
        """Whether the maps are of video clips (B, C, T, H, W)."""
        return isinstance(self.values, Tensor) and self.values.ndim == 5 and self.images is not None

    def _clip(self, index: int) -> tuple[Tensor, Tensor]:
        images, values = self._pictures()
        if not self.is_clip:
            raise BadArgument(f"this {self.method} explanation is of images, not video clips; use "
                              ".overlay() or .save()")
        return images[index], values[index]

    def strip(self, index: int = 0, *, max_frames: int = 8, tile: int = 128,
              **options: Any) -> Image.Image:
        """Sample ``index``'s clip as a strip: its frames above their overlays, one colour scale
        for the whole clip (:func:`convscope.render.video.frame_strip`)."""
        frames, values = self._clip(index)
        return frame_strip(frames, values, max_frames=max_frames, tile=tile, title=self._headline(),
                           **overlay_options(self.signed, options))

    def animation(self, index: int = 0, *, format: AnimationFormat = "gif", side: int = 256,
                  frame_ms: int = 250, **options: Any) -> bytes:
        """Sample ``index``'s overlay frames as a looping GIF or WebP (bytes), frames enlarged
        to about ``side`` pixels, one colour scale for the whole clip."""
        frames, values = self._clip(index)
        pictures = clip_overlays(frames, values, **overlay_options(self.signed, options))
        return animation_bytes(upscaled(pictures, side), format=format, frame_ms=frame_ms)

    def levels(self, index: int = 0, **options: Any) -> Image.Image:
        """Sample ``index``'s map as :meth:`overlay` normalizes it, 8-bit gray at input
        resolution (:func:`convscope.render.map_levels`): :meth:`overlay` is these levels scaled
        onto the box that :meth:`frame` gives, coloured by :func:`convscope.render.overlay_table`
        and blended over the photo, the rest darkened."""
        _, values = self._pictures()
        return map_levels(values[index], **overlay_options(self.signed, options))

    def frame(self, index: int = 0) -> tuple[tuple[float, float, float, float], tuple[int, int]]:
        """Where sample ``index``'s map lies on the picture :meth:`overlay` draws on: the box
        (top, left, bottom, right) in its pixels and its size (height, width)."""
        images, _ = self._pictures()
        if self.framings is None:
            height, width = images.shape[-2:]
            return (0.0, 0.0, float(height), float(width)), (height, width)
        framing = self.framings[index]
        top, left, bottom, right = (float(v) for v in framing.box)
        return (top, left, bottom, right), (framing.image.shape[-2], framing.image.shape[-1])

    def overlays(self, **options: Any) -> list[Image.Image]:
        """Every sample's map over its image, in batch order."""
        return [self.overlay(i, **options) for i in range(len(self))]

    def map_array(self, index: int = 0) -> np.ndarray:
        """Sample ``index``'s map at input resolution as float32 numpy, what ``--raw`` and the web
        app's ``map.npy`` hold: (H, W) for a one-channel map, (C, H, W) for per-pixel methods."""
        _, values = self._pictures()
        array = values[index].float().cpu().numpy()
        return (array[0] if array.shape[0] == 1 else array).astype(np.float32)

    def save_array(self, index: int = 0, path: str | Path | None = None) -> bytes:
        """:meth:`map_array` as ``.npy`` bytes, also written to ``path`` when given."""
        buffer = io.BytesIO()
        np.save(buffer, self.map_array(index))
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(buffer.getvalue())
        return buffer.getvalue()

    def localize(self, threshold: float = 0.2) -> Localization:
        """Weakly supervised localization: mask and (top, left, bottom, right) box per sample.

        The map (channels summed) is thresholded at ``threshold`` times its maximum and the
        largest connected component kept (Zhou et al. 2016 use 20%).
        """
        _, values = self._pictures()
        if self.is_clip:
            raise BadArgument("localize() boxes an image's map; a video clip's map has no one box "
                              "(read .values, (B, C, T, H, W))")
        maps = values.sum(1, keepdim=True) if values.shape[1] > 1 else values
        return localize(maps, threshold=threshold)

    def save(self, path: str | Path, **options: Any) -> list[Path]:
        """Write each overlay as PNG: ``path`` for one sample, ``stem_<i>.png`` for a batch
        (a clip's overlay is its frame strip; a .gif or .webp ``path`` writes its animation)."""
        path = Path(path)
        if self.is_clip and path.suffix.lower() in (".gif", ".webp"):
            written = []
            for i in range(len(self)):
                target = path if len(self) == 1 else path.with_name(f"{path.stem}_{i}{path.suffix}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.animation(i, format=path.suffix.lower()[1:], **options))  # type: ignore[arg-type]
                written.append(target)
            return written
        path = Path(path)
        pictures = self.overlays(**options)
        if len(pictures) == 1:
            return [save_png(pictures[0], path)]
        return [save_png(p, path.with_name(f"{path.stem}_{i}{path.suffix or '.png'}"))
                for i, p in enumerate(pictures)]

    def picture(self, max_samples: int = MAX_SAMPLES, **options: Any) -> Image.Image:
        """The overlays of the first ``max_samples`` samples in one grid, each captioned with its
        target and score, titled with the method and layer (what a notebook shows)."""
        self._pictures()
        count = min(len(self), max_samples)
        captions = []
        for i in range(count):
            target = ("callable target" if self.targets is None or self.target_labels is None
                      else f"{self.target_labels[i]} (class {int(self.targets[i])})")
            target = self.explained[i] if self.explained is not None else target
            captions.append(f"{target}, score {float(self.scores[i]):.3g}")
        pictures = [self.overlay(i, max_side=TILE, **options) for i in range(count)]
        return sample_grid(pictures, captions, self._headline(), total=len(self))

    def _headline(self) -> str:
        layer = f", layer {self.layer}" if self.layer else ""
        return f"{self.method}{layer}, {self.seconds:.2f} s"

    def _drawable(self) -> bool:
        return self.images is not None and isinstance(self.values, Tensor)

    def _repr_png_(self) -> bytes | None:
        return png_bytes(self.picture()) if self._drawable() else None

    def _repr_html_(self) -> str:
        if self._drawable():
            reason = f"layer {self.layer}: {self.layer_reason}" if self.layer and self.layer_reason else ""
            return figure_html(self.picture(), reason, alt=self._headline())
        rows = [[i, None if self.target_labels is None else self.target_labels[i],
                 float(self.scores[i])] for i in range(min(len(self), MAX_SAMPLES))]
        shapes = _shapes(self.values)
        return table_html(["sample", "target", "score"], rows,
                          f"{self._headline()}: attributions of shape {shapes} (not images)")

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no maps)."""
        return {
            "method": self.method,
            "layer": self.layer, "layer_reason": self.layer_reason,
            "seconds": round(self.seconds, 4),
            "shape": _shapes(self.values),
            "raw_shape": _shapes(self.raw),
            "targets": self.targets.tolist() if self.targets is not None else None,
            "target_labels": self.target_labels,
            "explained": self.explained,
            "scores": [round(float(s), 4) for s in self.scores],
            "options": {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
                        for k, v in self.options.items()},
        }


def _first(values: Tensor | tuple[Tensor, ...]) -> Tensor:
    return values if isinstance(values, Tensor) else values[0]


def _shapes(values: Tensor | tuple[Tensor, ...]) -> list[int] | list[list[int]]:
    return list(values.shape) if isinstance(values, Tensor) else [list(v.shape) for v in values]


def _detach(values: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
    return values.detach() if isinstance(values, Tensor) else tuple(t.detach() for t in values)


def _one_image_many_targets(x: Tensor, target: Target) -> tuple[Tensor, Target]:
    many = (isinstance(target, Sequence) and not isinstance(target, str)) or (
        isinstance(target, Tensor) and target.ndim == 1)
    if x.shape[0] == 1 and many and len(target) > 1:  # type: ignore[arg-type]
        return x.expand(len(target), *x.shape[1:]), target  # type: ignore[arg-type]
    return x, target


def explain(
    model: Model,
    images: Images,
    method: str = "gradcam",
    target: Target = "top1",
    layer: str = "auto",
    *,
    additional_forward_args: Any = None,
    forward_kwargs: dict[str, Any] | None = None,
    model_output: ModelOutput = None,
    **options: Any,
) -> Explanation:
    """Explain the model's score for ``target`` on each image with a registered ``method``.

    ``images``: paths, ``sample:NAME``, image tensors, or a (B, C, H, W) model-input batch. One
    image with a list of targets explains each target. Options are the method's keyword options
    (``steps=32`` for integrated gradients, ...); an unknown option raises ``BadArgument``.
    Models that take other inputs get them as model input: a (B, F) or (B, C, L) tensor or a
    tuple of tensors, with ``additional_forward_args`` / ``forward_kwargs`` passed to the forward
    and ``model_output`` picking the scores from a tuple or dict output (see
    :mod:`convscope.model.structured`); the explanation then holds one map per input.
    """
    info = get_method(method)
    call_options = {"additional_forward_args": additional_forward_args,
                    "forward_kwargs": forward_kwargs, "model_output": model_output}
    originals = None if is_model_input(images) or takes_clips(model) else as_images(images)  # type: ignore[arg-type]
    x = model_inputs(model, images if originals is None else originals)
    if isinstance(x, Tensor):
        x, target = _one_image_many_targets(x, target)
        target = bind_target(target, model.labels, (x.shape[-2], x.shape[-1]) if x.ndim == 4 else None)
    try:
        attributor = _method(model, method, layer, options)
    except ConvscopeError:
        raise
    except Exception as err:  # the model's own code failed: one line naming model and input
        raise method_failed(method, model, err, layer, _first(x)) from err
    attributor.check_inputs(x)
    start = time.perf_counter()
    raw = attributor(x, target, **call_options)
    if _first(raw).device.type == "cuda":
        torch.cuda.synchronize(_first(raw).device)
    seconds = time.perf_counter() - start
    logits = getattr(attributor, "logits", None)
    plain = (isinstance(x, Tensor) and not reads_output(target)
             and all(v is None for v in call_options.values()))
    if logits is not None and plain:  # the usual case: nothing left to run or bind
        call_target = target
    else:
        with guarded(model), torch.no_grad():  # what the method saw: the bound model and its target
            call = prepare(model, x, target, method=method, **call_options)
            call_target = call.target
            if logits is None:  # the method never ran the model on the inputs as they are
                try:
                    logits = call.model(call.inputs)
                except ConvscopeError:
                    raise
                except Exception as err:
                    raise method_failed(method, model, err, layer, call.inputs) from err
    explained_as = explained(logits, call_target, model.labels)
    idx = target_indices(logits, call_target, model.labels)
    scores = select(logits, call_target if idx is None else idx, model.labels)
    values = raw
    batch = x if isinstance(x, Tensor) and x.ndim in (4, 5) else None  # an image or clip batch
    drawable = batch is not None and batch.shape[1] == model.channels  # pixels preprocess describes
    if batch is not None and isinstance(raw, Tensor) and raw.ndim == batch.ndim:
        values = resize_map(raw, batch.shape[2:])  # bilinear, trilinear for clips
    return Explanation(
        method=method,
        values=_detach(values),
        raw=_detach(raw),
        images=model.denormalize(batch).clamp(0, 1).detach() if drawable and batch is not None else None,
        targets=idx.cpu() if idx is not None else None,
        target_labels=[model.label(int(i)) for i in idx] if idx is not None else None,
        scores=scores.detach().cpu(),
        layer=getattr(attributor, "layer", None),
        seconds=seconds,
        signed=bool(getattr(attributor, "signed", info.signed)),
        options=options, layer_reason=getattr(attributor, "layer_reason", None),
        framings=None if originals is None else model.framings(originals * (len(x) // len(originals))),
        explained=(describe_target(target, scores, model.labels, _size(x))  # type: ignore[arg-type]
                   if is_target_object(target) else explained_as),
    )


def _size(x: Tensor | tuple[Tensor, ...]) -> tuple[int, int] | None:
    return (int(x.shape[-2]), int(x.shape[-1])) if isinstance(x, Tensor) and x.ndim == 4 else None


Key = tuple[object, ...]


@dataclass
class _Recent:
    """Method objects of the model ``explain()`` was last called with (in this thread), reused
    while its structure and weights stay the same (:func:`state_key`): a method keeps what it
    prepared (LRP's folded copy, the ``"auto"`` layer found by a dry forward pass) for the next
    call, as a method object held by the user does. Any change of a parameter or buffer (an
    optimizer step, a loaded state dict, a swapped tensor) bumps its version or identity and drops
    the cache: a method never explains stale weights. Only the last model is held, so a model the
    user drops is freed at the next call with another; each thread has its own, so threads never
    share a method object."""

    model: weakref.ReferenceType[Model]
    state: Key
    methods: dict[Key, Any] = field(default_factory=dict)


_local = threading.local()
_PLAIN = (int, float, str, bool, type(None))


def state_key(model: Model) -> Key:
    """What a reused method object depends on: the input size, every submodule (identity and
    type, in tree order) and every parameter and buffer (identity and in-place version). One walk
    of the ``_modules`` dicts, no data read and no names built: it runs on every call."""
    key: list[object] = [model.spec]
    stack: list[nn.Module] = [model]
    while stack:
        module = stack.pop()
        key += (id(module), type(module))
        for tensor in (*module._parameters.values(), *module._buffers.values()):
            if tensor is not None:
                key += (id(tensor), tensor._version)
        stack.extend(m for m in reversed(module._modules.values()) if m is not None)
    return tuple(key)


def _method(model: Model, name: str, layer: str, options: dict[str, Any],
            make: Callable[[], Any] | None = None) -> Any:
    """The method object for this call: the one from the last call with the same model, state,
    method, layer and options when there is one (options of plain values only), else a new one,
    from ``make`` (for a method that is not registered) or the registry."""
    build = make or (lambda: build_method(name, model, layer, **options))
    state = state_key(model)
    recent: _Recent | None = getattr(_local, "recent", None)
    if recent is None or recent.model() is not model or recent.state != state:
        recent = _local.recent = _Recent(weakref.ref(model), state)
    if not all(isinstance(v, _PLAIN) for v in options.values()):
        return build()
    key = (name, layer, tuple(sorted((k, type(v), v) for k, v in options.items())))
    if key not in recent.methods:
        recent.methods[key] = build()
    return recent.methods[key]
