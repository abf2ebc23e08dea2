"""The synthesis lab (``/lab``): adversarial examples, fooling images, inversion, texture, style
and fast style, each a form with the settings of its CLI command, run as a cached job. The address
keeps the settings (``/lab?kind=adversarial&target=3&eps=8/255``); ``run=1`` in it starts the job.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from ..errors import BadArgument
from ..model import Model
from ..render import png_bytes
from ..tasks.adversarial import DEFAULT_MARGIN, adversarial, class_of, fooling
from ..tasks.fast_style import DEFAULT_BLOCKS, DEFAULT_WIDTH, apply_style, content_images, train
from ..tasks.synthesis import Synthesis, check_style_layers, inversion, layer_list, style, texture
from ..types import ProgressFn
from .cache import JobResult
from .errors import NotFound
from .images import folder_file, list_images
from .pages import render
from .params import FORM_KEYS, Field, check_memory, parse_settings
from .state import AppState, Service

router = APIRouter()

_NOT_SETTINGS = FORM_KEYS | {"kind"}
MAX_SIZE = 2048
"""Largest image side of any kind (pixels); a job's memory is checked besides."""
MAX_STEPS = 100_000
SIDES = ("size", "source_size", "style_size", "apply_size")
"""The image sides a kind may set; the largest one (the model's input when not set) sizes its memory."""


def _default(fn: Callable[..., Any], name: str) -> Any:
    """The default of ``fn``'s keyword ``name``: the web offers what the task does."""
    return inspect.signature(fn).parameters[name].default


Run = Callable[[Model, dict[str, Any], ProgressFn], JobResult]
Check = Callable[[AppState, Model, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Kind:
    """One synthesis method of the lab: its CLI command, its settings, its job, and the checks of
    its settings beyond their own (against the model, before anything runs; they may resolve
    settings, answered as a dict of new values)."""

    name: str
    title: str
    command: str
    about: str
    fields: tuple[Field, ...]
    run: Run
    check: Check = lambda state, model, s: {}


# -- what each kind does ------------------------------------------------------------------------
def _result(data: dict[str, Any], pictures: list[tuple[str, str, Any]], **files: bytes) -> JobResult:
    """``data`` with the list of pictures; each (file, caption, picture) as a PNG; ``files`` as they are."""
    shown = [{"file": name, "caption": caption} for name, caption, _picture in pictures]
    return JobResult(data={**data, "pictures": shown},
                     files={**{name: png_bytes(picture) for name, _caption, picture in pictures}, **files})


def _synthesis_result(made: Synthesis, pictures: list[tuple[str, str, Any]]) -> JobResult:
    return _result({**made.summary, "headline": made.headline}, pictures)


def _rest(s: dict[str, Any], *given: str) -> dict[str, Any]:
    """Every setting but ``given`` (and the job's key) as the task's keywords of the same names: a
    kind's fields are its task's keywords."""
    return {name: value for name, value in s.items() if name not in given and name != "key"}


def _adversarial(model: Model, s: dict[str, Any], progress: ProgressFn) -> JobResult:
    made = adversarial(model, s["image"], progress=progress, **_rest(s, "image"))
    gain = made.summary["perturbation_amplified"]
    return _synthesis_result(made, [
        ("original.png", "original", made.result.originals[0]),
        ("adversarial.png", "adversarial", made.picture),
        ("perturbation.png", f"perturbation x{gain}" if gain else "perturbation (none)",
         made.extra["perturbation"])])


def _check_fooling(state: AppState, model: Model, s: dict[str, Any]) -> dict[str, Any]:
    return {"start": s["start"] if s["start"] in ("noise", "zeros") else state.image(s["start"])}


def _fooling(model: Model, s: dict[str, Any], progress: ProgressFn) -> JobResult:
    made = fooling(model, s["target"], progress=progress, **_rest(s, "target"))
    return _synthesis_result(made, [("result.png", made.summary["target"], made.picture)])


def _inversion(model: Model, s: dict[str, Any], progress: ProgressFn) -> JobResult:
    made = inversion(model, s["image"], s["layers"], progress=progress, **_rest(s, "image", "layers"))
    return _synthesis_result(made, [("result.png", "original and each layer's inversion", made.picture)])


def _check_texture(state: AppState, model: Model, s: dict[str, Any]) -> dict[str, Any]:
    check_style_layers(model, s["layers"])
    return {}


def _texture(model: Model, s: dict[str, Any], progress: ProgressFn) -> JobResult:
    made = texture(model, s["image"], progress=progress, **_rest(s, "image"))
    return _synthesis_result(made, [("result.png", "synthesized texture", made.picture)])


def _check_style(state: AppState, model: Model, s: dict[str, Any]) -> dict[str, Any]:
    layers = s["content_layer"]
    if layers is not None and len(layers) != 1:
        raise BadArgument(f"content_layer={','.join(layers)!r}: give one layer")
    check_style_layers(model, layers and layers[0], s["style_layers"])
    return {"content_layer": layers and layers[0]}


def _style(model: Model, s: dict[str, Any], progress: ProgressFn) -> JobResult:
    made = style(model, s["content"], s["style"], progress=progress, **_rest(s, "content", "style"))
    return _synthesis_result(made, [("result.png", "stylized", made.picture)])


NET_FILE = "net.pt"


def net_path(state: AppState, ref: str) -> Path:
    """The fast-style network a reference names: ``lab:<key>`` (a network trained in the lab, kept
    in the cache) or ``folder:<folder id>/<file>.pt`` (a file written by `convscope fast-style
    train` inside one of the ``--images`` folders); nothing else is ever read."""
    kind, _, rest = ref.partition(":")
    if kind == "lab":
        return state.cache.file(rest, NET_FILE)
    if kind == "folder":
        return folder_file(state, ref, "net", ".pt")
    raise BadArgument(f"net {ref!r}: use lab:KEY (a network trained here) or folder:FOLDER/FILE.pt")


def _contents(state: AppState, text: str) -> list[Any]:
    images: list[Any] = []
    for ref in (r.strip() for r in text.split(",")):
        if ref == "samples":
            images += content_images(["samples"])
        elif ref:
            images.append(state.image(ref))
    if not images:
        raise BadArgument("content: give image references or 'samples'")
    return images


def _check_fast_style(state: AppState, model: Model, s: dict[str, Any]) -> dict[str, Any]:
    if s["net"]:
        return {"net_path": net_path(state, s["net"])}
    check_style_layers(model, None)
    return {"content": _contents(state, s["content"])}


def _fast_style(model: Model, s: dict[str, Any], progress: ProgressFn) -> JobResult:
    """Apply the network ``net``, or train one and apply it (``s["key"]``: the job's own key)."""
    image = s["image"]
    if s["net"]:
        styled = apply_style(s["net_path"], [image], size=s["apply_size"], device=model.device)[0]
        return _result({"net": s["net"], "headline": f"stylized with {s['net']}"},
                       [("original.png", "image", image), ("result.png", "stylized", styled)])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / NET_FILE
        made = train(model, s["style"], s["content"], out=out, progress=progress,
                     **_rest(s, "image", "net", "apply_size", "style", "content"))
        blob = out.read_bytes()
    styled = apply_style(made.net, [image], size=s["apply_size"])[0]
    headline = (f"{made.summary['steps_run']} steps in {made.summary['seconds']:.1f}s; loss "
                f"{made.summary['loss_first']:.4g} -> {made.summary['loss_last10']:.4g}")
    return _result({**made.summary, "net": f"lab:{s['key']}", "headline": headline},
                   [("style.png", "style", s["style"]), ("original.png", "image", image),
                    ("result.png", "stylized", styled)], **{NET_FILE: blob})


# -- the kinds and their settings (defaults: the task's, or the CLI's where it differs) -----------
def _common(fn: Callable[..., Any], *, size_help: str, size_default: int | None = None) -> tuple[Field, ...]:
    """``--steps --size --seed`` of every optimizing command (``add_run_options``)."""
    return (Field("steps", "int", _default(fn, "steps"), "optimizer steps", low=1, high=MAX_STEPS),
            Field("size", "int", size_default, size_help, low=8, high=MAX_SIZE),
            Field("seed", "int", _default(fn, "seed"), "random seed", low=0, high=2**63 - 1))


_OPTIMIZERS = ("lbfgs", "adam")
_PARAMS = ("fourier", "pixel")

KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("adversarial", "Adversarial example", "convscope adversarial",
         "Change the image by at most eps per pixel (linf) or in total (l2) so the network predicts "
         "the target (or anything else).", (
             Field("image", "image", "sample:cat", "the image to attack", required=True),
             Field("target", "target", None, "class index or label to reach (empty: untargeted)"),
             Field("eps", "budget", "4/255", "budget in [0,1] pixel units, e.g. 4/255", high=10_000),
             Field("norm", "choice", _default(adversarial, "norm"), "budget norm", ("linf", "l2")),
             Field("method", "choice", _default(adversarial, "method"), "attack", ("pgd", "fgsm")),
             Field("step_size", "budget", None, "PGD step, e.g. 1/255 (empty: max(2.5 eps/steps, eps/4))",
                   high=10_000),
             Field("random_start", "bool", _default(adversarial, "random_start"),
                   "PGD from a random point in the ball"),
             Field("margin", "float", DEFAULT_MARGIN, "the target's probability must beat every other "
                   "class by this much (0: any change of the prediction)", low=0, high=1),
             Field("early_stop", "bool", _default(adversarial, "early_stop"), "stop once it succeeds"),
             Field("quantize", "bool", _default(adversarial, "quantize"), "round the result to 8 bits"),
             *_common(adversarial, size_help="resize the image to S pixels first (empty: the model's input)"),
         ), _adversarial),
    Kind("fooling", "Fooling image", "convscope fool",
         "Optimize an image from noise until the network gives the target at least the threshold "
         "(Nguyen et al. 2015).", (
             Field("target", "target", None, "class index or label", required=True),
             Field("threshold", "float", _default(fooling, "threshold"), "confidence to reach",
                   low=0, high=1, strict=True),
             Field("start", "text", _default(fooling, "start"), "noise, zeros, or an image reference"),
             Field("lr", "float", _default(fooling, "lr"), "Adam learning rate", low=0, strict=True),
             *_common(fooling, size_help="image size in pixels (empty: the model's input)"),
         ), _fooling, _check_fooling),
    Kind("inversion", "Feature inversion", "convscope invert",
         "Reconstruct the image from its features at each layer (Mahendran & Vedaldi 2015).", (
             Field("image", "image", "sample:cat", "the image to reconstruct", required=True),
             Field("layers", "layers", None, "comma-separated layer names", required=True),
             Field("tv", "float", _default(inversion, "tv"), "total-variation weight", low=0),
             Field("optimizer", "choice", _default(inversion, "optimizer"), "optimizer", _OPTIMIZERS),
             Field("l2", "float", _default(inversion, "l2"), "L2 prior weight", low=0),
             Field("param", "choice", _default(inversion, "param"), "image parameterization", _PARAMS),
             *_common(inversion, size_help="resize the image to S pixels (empty: the model's input)"),
         ), _inversion),
    Kind("texture", "Texture synthesis", "convscope texture",
         "A new texture with the Gram statistics of the image (Gatys et al. 2015).", (
             Field("image", "image", "sample:brick", "the texture image", required=True),
             Field("layers", "layers", None, "comma-separated style layers (empty: the model's)"),
             Field("source_size", "int", _default(texture, "source_size"),
                   "texture resized to this shorter side", low=8, high=MAX_SIZE),
             Field("param", "choice", _default(texture, "param"), "image parameterization", _PARAMS),
             Field("optimizer", "choice", _default(texture, "optimizer"), "optimizer", _OPTIMIZERS),
             Field("compare", "bool", _default(texture, "compare"), "source and result side by side"),
             *_common(texture, size_help="output size in pixels", size_default=_default(texture, "size")),
         ), _texture, _check_texture),
    Kind("style", "Style transfer", "convscope style",
         "Paint the content image in the style of the style image by optimization (Gatys et al. 2016).", (
             Field("content", "image", "sample:cat", "content image", required=True),
             Field("style", "image", "sample:brick", "style image", required=True),
             Field("optimizer", "choice", _default(style, "optimizer"), "optimizer", _OPTIMIZERS),
             Field("start", "choice", _default(style, "start"), "start from", ("content", "noise")),
             Field("content_layer", "layers", None, "one layer (empty: the model's content layer)"),
             Field("style_layers", "layers", None, "comma-separated (empty: the model's style layers)"),
             Field("style_weight", "float", _default(style, "style_weight"), "style weight", low=0),
             Field("content_weight", "float", _default(style, "content_weight"), "content weight", low=0),
             Field("tv", "float", _default(style, "tv"), "total-variation weight", low=0),
             Field("preserve_colors", "bool", _default(style, "preserve_colors"), "luminance-only transfer"),
             Field("compare", "bool", _default(style, "compare"), "content, style and result side by side"),
             *_common(style, size_help="content's shorter side in pixels",
                      size_default=_default(style, "size")),
         ), _style, _check_style),
    Kind("fast_style", "Fast style transfer", "convscope fast-style train | apply",
         "Train a feed-forward network for one style (Johnson et al. 2016; the model is the frozen "
         "feature network) and stylize the image with it, or apply a trained network (net).", (
             Field("image", "image", "sample:cat", "the image to stylize", required=True),
             Field("net", "text", None, "a trained network: lab:KEY or folder:FOLDER/FILE.pt "
                   "(empty: train one with the settings below)"),
             Field("apply_size", "int", None, "resize the image so its longer side is this first", low=1,
                   high=MAX_SIZE),
             Field("style", "image", "sample:brick", "style image (training)"),
             Field("content", "text", "samples", "content images for training: image references "
                   "(comma-separated) or 'samples' (every sample photo)"),
             Field("steps", "int", _default(train, "steps"), "training steps", low=1, high=MAX_STEPS),
             Field("size", "int", _default(train, "size"), "crop size in pixels", low=8, high=MAX_SIZE),
             Field("batch", "int", _default(train, "batch"), "crops per step", low=1, high=256),
             Field("style_weight", "float", _default(train, "style_weight"), "style weight", low=0),
             Field("content_weight", "float", _default(train, "content_weight"), "content weight", low=0),
             Field("tv_weight", "float", _default(train, "tv_weight"), "total variation weight", low=0),
             Field("style_size", "int", None, "style image's shorter side (empty: 2 x size)", low=8,
                   high=MAX_SIZE),
             Field("lr", "float", _default(train, "lr"), "Adam learning rate", low=0, strict=True),
             Field("width", "int", DEFAULT_WIDTH, "base channels of the network", low=1, high=512),
             Field("blocks", "int", DEFAULT_BLOCKS, "residual blocks", low=0, high=64),
             Field("seed", "int", _default(train, "seed"), "random seed", low=0, high=2**63 - 1),
         ), _fast_style, _check_fast_style),
)}


def kind_of(name: str) -> Kind:
    if name not in KINDS:
        raise NotFound(f"no lab kind {name!r}; kinds: {', '.join(KINDS)}")
    return KINDS[name]


# -- routes ------------------------------------------------------------------------------------

@router.get("/lab")
def lab_page(request: Request, state: Service, kind: str = "adversarial", model: str | None = None
             ) -> Response:
    """The form of one kind, filled from the URL (checked: a bad setting is a 400 page)."""
    entry = state.model(model)
    chosen = kind_of(kind)
    parse_settings(chosen.fields, request.query_params, _NOT_SETTINGS, chosen.name, partial=True)
    values = {f.name: request.query_params.get(f.name, f.shown_default) for f in chosen.fields}
    return render(request, "lab.html", title="Lab", kinds=list(KINDS.values()), kind=chosen, values=values,
                  model=entry.name, models=list(state.models), images=list_images(state),
                  autorun=request.query_params.get("run") == "1")


@router.post("/api/lab/{name}")
def lab_run(state: Service, name: str, body: dict[str, Any] = Body(default_factory=dict)  # noqa: B008
            ) -> Response:
    """Start a job: JSON ``{setting: value, ..., "model": NAME, "wait": bool}`` -> the job JSON; the
    settings are checked (a 4xx) before anything runs."""
    kind, entry = kind_of(name), state.model(body.get("model"))
    settings = parse_settings(kind.fields, body, _NOT_SETTINGS, kind.name)
    sides = {n: settings[n] or max(entry.model.input_size or (224,)) for n in SIDES if n in settings}
    side = max(sides, key=lambda n: sides[n])
    batch = f", batch={settings['batch']}" if "batch" in settings else ""
    check_memory(state.config.max_job_bytes, f"{kind.name} with {side}={sides[side]}{batch}",
                 sides[side] ** 2, settings.get("batch", 1))
    keyed = settings
    if kind.name == "fast_style" and settings["net"]:  # applying a net: the training settings play no part
        keyed = {k: settings[k] for k in ("image", "net", "apply_size")}
    # the job gets the images themselves, keyed by their pixels too: a folder file that changed
    # never gets the old result
    pictures = {f.name: state.image(keyed[f.name]) for f in kind.fields
                if f.type == "image" and keyed.get(f.name)}
    digests = {k: state.digest(picture) for k, picture in pictures.items()}
    key = state.cache.key("lab", kind.name, entry.key, keyed, digests)
    served, s = entry.model, {**settings, **pictures, "key": key}  # the settings the job gets
    s |= {f.name: class_of(served, s[f.name]) for f in kind.fields if f.type == "target" and s[f.name]}
    s |= {f.name: layer_list(served, s[f.name]) for f in kind.fields if f.type == "layers"}
    s |= kind.check(state, served, s)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items()
                      if v not in (None, "") and k in ("image", "target", "eps", "layers", "content",
                                                      "style", "net", "steps"))
    job = state.jobs.submit("lab", f"{kind.title} ({entry.name}): {shown}",
                            lambda progress: kind.run(served, s, progress), key=key)
    return state.answer(job, bool(body.get("wait")))
