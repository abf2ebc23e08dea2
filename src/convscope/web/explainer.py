"""The image explainer (the successor of Captum Insights): top classes, methods side by side.

``/explain?image=REF&model=&target=&methods=gradcam,occlusion&layer=&occlusion.window=16``
is the page; everything it shows is in its address. The page asks ``/api/predict`` for the top
classes, and ``POST /api/explain`` once per method: a job cached on disk by model, image content,
method, target, layer and options, whose files are ``levels.png`` (the map's 8-bit levels,
:meth:`Explanation.levels`) and ``map.npy`` (what ``convscope explain --raw`` writes). The levels
also come in the answer (``data["levels"]``, a ``data:`` URL), so the map needs no second request.
The page colours them by the overlay's table on a canvas over the photo (the job's ``box`` and
``size`` place them), as :meth:`Explanation.overlay` draws it, so the answer does not wait for an
overlay to be encoded; ``map.png``, for exports and the compare page, is drawn on its first request.

Everything a request names is checked before any work is queued, with the library's own checks
and messages (:mod:`convscope.web.params`); what only the method can refuse fails the job with
the same line, raised again as a 4xx when the request waited for it.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from ..errors import BadArgument, ConvscopeError
from ..methods.option_specs import check_options, describe, option_specs
from ..methods.registry import get_method, method_list, method_names
from ..model import Model, get_layer
from ..model.targets import check_class
from ..render import overlay_table, png_bytes, to_pil
from ..render.report import FAITHFULNESS_NOTE, colour_key
from ..tasks.evaluate import faithfulness_scores
from ..tasks.explain import explain, overlay_options, photo_overlay
from ..tasks.predict import predict
from ..types import ProgressFn
from .cache import JobResult
from .errors import NotFound
from .images import ImageChoice, list_images
from .job_routes import file_response, png_response
from .jobs import Job
from .pages import render
from .params import check_explain_memory, parse_int, parse_text
from .state import AppState, ModelEntry, Service

router = APIRouter()

DEFAULT_METHODS = ("gradcam", "saliency")
FAITHFULNESS_STEPS = 100
"""Deletion and insertion curve steps: the default of ``convscope evaluate``, so the numbers
match the CLI's."""
MAP_MAX_SIDE = 1600
"""The overlay is drawn on the photo shrunk to this many pixels on its longer side: for a 12 MP
upload, drawing and encoding took 20 s at full size (``map.npy`` keeps the input resolution)."""
RESULT_FORMAT = 3
"""Part of the cache key: raised when the job's files change (2: ``levels.png`` and the box in
place of a ``map.png`` drawn by the job; 3: the levels also in the answer's ``data``), so a page
never gets an entry in the older form."""
MAX_TOP_K = 100
PREVIEW_SIDE = 448
LAYERS_WAIT_SECONDS = 5.0


class ExplainRequest(BaseModel):
    """The body of ``POST /api/explain`` (the explain API of the web app's notes)."""

    model_config = ConfigDict(extra="forbid")

    image: str
    method: str
    target: Any = "top1"
    """A class index, a label or ``"top1"`` (checked by :func:`~convscope.model.targets.check_class`)."""
    layer: str | None = "auto"
    options: dict[str, Any] = {}
    model: str | None = None
    faithfulness: bool = False
    wait: bool = False


# -- checks of what a request names -------------------------------------------------------------

def check_layer(model: Model, layer: str | None, method: str | None = None) -> str:
    """``"auto"`` or a layer of the model (a did-you-mean 404 otherwise); methods without a
    layer ignore it, so one layer choice can go with every method of the page."""
    layer = (layer or "auto").strip() or "auto"
    if layer != "auto":
        get_layer(model, layer)
    return layer if method is None or get_method(method).needs_layer else "auto"


def url_options(query: dict[str, str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``occlusion.window=16`` query parameters -> ``{"occlusion": {"window": 16}}``, checked."""
    found: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for key, value in query.items():
        method, dot, option = key.partition(".")
        if not dot:
            continue
        if method not in found:
            get_method(method)  # a typo gets its did-you-mean
            raise BadArgument(f"option {key!r} is for method {method!r}, which is not among the "
                              f"methods {','.join(methods)}; add it to methods=")
        found[method][option] = parse_text(key, value)
    return {m: check_options(m, opts) for m, opts in found.items()}


# -- the job ------------------------------------------------------------------------------------

def explain_job(model: Model, picture: Tensor, method: str, target: int | str, layer: str,
                options: dict[str, Any], faithfulness: bool,
                image: tuple[str, str, str]) -> Callable[[ProgressFn], JobResult]:
    """The job function: one :func:`convscope.explain` call; the coloured layer, where it lies on
    the photo, the map, the numbers. ``image``: the request's image reference, the picture's
    digest and the cache key, from which :func:`overlay_route` draws the full overlay later."""
    ref, digest, key = image
    takes_progress = "progress" in get_method(method).options()

    def run(progress: ProgressFn) -> JobResult:
        progress(0, 1)
        extra: dict[str, Any] = {"progress": progress} if takes_progress else {}
        result = explain(model, picture, method=method, target=target, layer=layer, **options, **extra)
        assert result.targets is not None and result.target_labels is not None
        data: dict[str, Any] = {
            "method": method, "seconds": round(result.seconds, 4), "layer": result.layer,
            "layer_reason": result.layer_reason, "target": int(result.targets[0]),
            "label": result.target_labels[0], "score": round(float(result.scores[0]), 6),
            "signed": result.signed, "options": options}
        box, size = result.frame(0)
        data |= {"box": [round(v, 4) for v in box], "size": list(size), "image": ref, "digest": digest,
                 "overlay": f"/api/explain/{key}/map.png"}
        if faithfulness:
            x = model.preprocess([picture])
            scores = faithfulness_scores(model, x, result.maps, result.targets.to(x.device),
                                         FAITHFULNESS_STEPS)
            data |= {"deletion": round(scores["deletion_auc"][0], 4),
                     "insertion": round(scores["insertion_auc"][0], 4),
                     "faithfulness_steps": FAITHFULNESS_STEPS}
        levels = png_bytes(result.levels(0))
        data["levels"] = "data:image/png;base64," + base64.b64encode(levels).decode("ascii")
        files = {"levels.png": levels, "map.npy": result.save_array(0)}
        if not takes_progress:  # a method's own count stays what the page shows at the end
            progress(1, 1)
        return JobResult(data, files)

    return run


def submit_explain(state: AppState, body: ExplainRequest) -> Job:
    entry = state.model(body.model)
    picture = state.image(body.image)
    method = get_method(body.method).name
    defaults = {s.name: s.default for s in option_specs(method)}
    options = {k: v for k, v in check_options(method, body.options).items() if v != defaults.get(k)}
    layer = check_layer(entry.model, body.layer, method)
    target = check_class(body.target, entry.model.labels)
    check_explain_memory(state.config.max_job_bytes, entry.model, method, options)
    digest = state.digest(picture)
    key = state.cache.key("explain", RESULT_FORMAT, entry.key, digest, method, target, layer, options,
                          body.faithfulness, FAITHFULNESS_STEPS if body.faithfulness else None)
    title = f"{method} of {body.image} ({entry.name}, target {target})"
    job = explain_job(entry.model, picture, method, target, layer, options, body.faithfulness,
                      (body.image, digest, key))
    return state.jobs.submit("explain", title, job, key=key, per_module=True)  # only runs the model


# -- routes -------------------------------------------------------------------------------------

@router.post("/api/explain")
def explain_route(state: Service, body: ExplainRequest) -> Response:
    """Queue one explanation; with ``"wait": true`` answer once it has finished (the one
    waiting policy, :meth:`AppState.answer`)."""
    return state.answer(submit_explain(state, body), body.wait)


@router.get("/api/explain/{key}/map.png")
def overlay_route(state: Service, key: str) -> Response:
    """A finished explanation's full overlay (:meth:`Explanation.overlay`, the photo shrunk to
    :data:`MAP_MAX_SIDE`): drawn from its ``map.npy`` on the first request, then kept with it."""
    with contextlib.suppress(NotFound):
        return file_response("map.png", path=state.cache.file(key, "map.png"))
    entry = state.cache.get(key)
    if entry is None or "digest" not in entry.data:
        raise NotFound(f"no finished explanation {key!r}")
    data = entry.data
    picture = state.image(data["image"])
    if state.digest(picture) != data["digest"]:
        raise NotFound(f"the image {data['image']!r} changed since this explanation; explain it again")
    values = torch.from_numpy(np.load(state.cache.file(key, "map.npy")))
    values = values[None] if values.dim() == 2 else values
    drawn = photo_overlay(picture, data["box"], values, MAP_MAX_SIDE, **overlay_options(data["signed"], {}))
    blob = png_bytes(drawn)
    state.cache.add_file(key, "map.png", blob)
    return file_response("map.png", blob)


@router.get("/api/methods")
def methods_route() -> dict[str, Any]:
    return {"methods": [describe(name) for name in method_names()]}


@router.get("/api/predict")
def predict_route(state: Service, image: str, k: str = "5", model: str | None = None) -> dict[str, Any]:
    """The top ``k`` classes of an image (run on the worker that owns the model)."""
    top = parse_int("k", k, 1, MAX_TOP_K)
    entry = state.model(model)
    picture = state.image(image)
    rows = state.jobs.run(lambda: predict(entry.model, picture, top=top), model=entry.model)[0]
    return {"image": image, "model": entry.name, "predictions": [p.as_dict() for p in rows]}


@router.get("/api/explain/image.png")
def image_route(state: Service, image: str) -> Response:
    picture = to_pil(state.image(image)).convert("RGB")
    picture.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return png_response(picture)


def spatial_layers(state: AppState, entry: ModelEntry) -> list[dict[str, Any]]:
    """The layers with a spatial output (where a CAM can be read), from one dry forward pass on
    the worker, remembered per model content (only ``"auto"`` while a long job holds the worker)."""
    try:
        rows = state.layer_table(entry, timeout=LAYERS_WAIT_SECONDS).rows
    except ConvscopeError:  # the worker is busy with a long job: offer "auto" this time
        return []
    return [{"name": r.name, "type": r.type, "shape": list(r.map_shape)} for r in rows
            if r.map_shape is not None and r.map_shape[1] * r.map_shape[2] > 1]


MAX_NAME = 120
"""Characters of an upload's file name shown on the page."""


@router.get("/explain")
def explain_page(request: Request, state: Service, image: str | None = None, model: str | None = None,
                 target: str | None = None, methods: str | None = None, layer: str | None = None,
                 faithfulness: str | None = None, name: str | None = None) -> Response:
    """The page; its state is its address, checked like an API request (bad parts: 4xx page).
    ``name``: an upload's file name, shown in place of its ``upload:`` reference."""
    entry = state.model(model)
    choices = list_images(state)
    ref = image or (choices[0].ref if choices else "sample:cat")
    state.image(ref)
    chosen = method_list(methods) if methods and methods.strip(" ,") else list(DEFAULT_METHODS)
    options = url_options(dict(request.query_params), chosen)
    layer = check_layer(entry.model, layer)
    page_target = check_class(target, entry.model.labels) if target else None
    image_name = (name or "")[:MAX_NAME] if ref.startswith("upload:") else ""
    setup = {
        "image": ref, "name": image_name, "model": entry.name, "target": page_target, "methods": chosen,
        "layer": layer, "options": options, "faithfulness": faithfulness in ("1", "true", "on"),
        "catalog": [describe(n) for n in method_names()],
        "defaults": {n: {s.name: s.default for s in option_specs(n)} for n in method_names()},
        "colours": {mode: overlay_table(mode).flatten().tolist() for mode in ("signed", "unsigned")},
        "overlay_side": MAP_MAX_SIDE,
    }
    groups: dict[str, list[ImageChoice]] = {}
    for choice in choices:  # samples first, then each folder, in the order they were given
        groups.setdefault(choice.group, []).append(choice)
    return render(request, "explain.html", title="Explain", setup=setup, image_groups=groups,
                  models=list(state.models), layers=spatial_layers(state, entry),
                  colour_key=Markup(colour_key()), faithfulness_note=FAITHFULNESS_NOTE)
