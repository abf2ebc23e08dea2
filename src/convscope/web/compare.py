"""Two models side by side: one image explained by both, and two atlases on aligned maps.

``/compare`` explains one image with each of two served models (each one's own top class unless a
target is given) with the explainer's own jobs, each beside its top classes. ``/compare/atlas``
puts the maps of two atlases of the same dataset side by side, the second aligned onto the first
(``align_to``: a Procrustes fit by the images both share), e.g. a fine-tuned model and its base.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..data.atlas import Atlas
from ..errors import BadArgument
from ..methods.registry import get_method, method_names
from ..tasks import atlas_map
from ..tasks.predict import predict
from .explainer import ExplainRequest, submit_explain
from .images import list_images
from .pages import render
from .state import AppState, ModelEntry, Service

router = APIRouter()

TOP = 5


def two_models(state: AppState, a: str | None, b: str | None) -> tuple[ModelEntry, ModelEntry]:
    """The two served models to compare: the named ones, else the first two started."""
    names = list(state.models)
    if len(names) < 2 and (a is None or b is None):
        raise BadArgument("comparing needs two models: start the server with two --model values "
                          "(convscope serve --model A --model B)")
    first, second = state.model(a or names[0]), state.model(b or names[1])
    if first.name == second.name:
        raise BadArgument(f"a={first.name!r} and b={second.name!r} are the same model; name two")
    return first, second


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, state: Service, image: str | None = None, method: str = "gradcam",
                 target: str = "", a: str | None = None, b: str | None = None) -> Any:
    first, second = two_models(state, a, b)
    get_method(method)  # an unknown method: one line naming the known ones
    columns = []
    if image is not None:
        picture = state.image(image)
        tops = [state.jobs.run(partial(predict, entry.model, [picture], top=TOP), model=entry.model)[0]
                for entry in (first, second)]
        for entry, top in zip((first, second), tops):
            # the explainer's own job (same checks, cache and files) for each model
            job = submit_explain(state, ExplainRequest(image=image, method=method, target=target or "top1",
                                                       model=entry.name))
            columns.append({"model": entry.name, "job": job.id, "predictions": [p.as_dict() for p in top]})
    return render(request, "compare.html", title=f"Compare {first.name} and {second.name}",
                  image=image, method=method, target=target, a=first.name, b=second.name,
                  columns=columns, methods=method_names(), models=list(state.models),
                  images=list_images(state))


def same_dataset(first: Atlas, second: Atlas, a: str, b: str) -> None:
    """Refuse two atlases that did not scan the same images (their maps cannot be aligned)."""
    same = (first.dataset == second.dataset and first.size == second.size
            and (first.dataset is not None or first.sources() == second.sources()))
    if not same:
        raise BadArgument(f"atlases {a!r} ({first.dataset or 'in-memory'}, {first.size} images) and "
                          f"{b!r} ({second.dataset or 'in-memory'}, {second.size} images) are of "
                          "different datasets; compare two scans of the same dataset")


def map_url(atlas_id: str, layer: str, method: str, align_to: str | None) -> str:
    """The embeddable map page of one atlas layer (``align_to``: ``ATLAS:LAYER`` to fit onto)."""
    query = {"embed": 1, "method": method, **({"align_to": align_to} if align_to else {})}
    return f"/atlas/{quote(atlas_id)}/{quote(layer, safe='')}?{urlencode(query)}"


@router.get("/compare/atlas", response_class=HTMLResponse)
def compare_atlas_page(request: Request, state: Service, a: str | None = None, b: str | None = None,
                       method: str = "tsne") -> Any:
    """Without ``a`` and ``b``: the form to choose them."""
    method = atlas_map.check_method(method)
    sides, size = [], 0
    if a is not None or b is not None:
        if a is None or b is None:
            raise BadArgument("give two atlas layers, a=ATLAS:LAYER and b=ATLAS:LAYER")
        id_a, layer_a, atlas_a = state.atlas_ref("a", a)
        id_b, layer_b, atlas_b = state.atlas_ref("b", b)
        same_dataset(atlas_a, atlas_b, id_a, id_b)
        sides = [{"ref": a, "model": atlas_a.model_name, "url": map_url(id_a, layer_a, method, None)},
                 {"ref": b, "model": atlas_b.model_name, "url": map_url(id_b, layer_b, method, a)}]
        size = atlas_a.size
    return render(request, "compare_atlas.html", title=f"Compare {a} and {b}" if sides else "Compare atlases",
                  a=a, b=b, method=method, methods=atlas_map.PROJECTIONS, sides=sides, size=size,
                  refs=[f"{i}:{layer}" for i, atlas in state.open_atlases() for layer in atlas.layers])
