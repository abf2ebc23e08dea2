"""The neighbours panel's data: the atlas images nearest to a map point or to any image.

The answer comes from :func:`convscope.tasks.atlas.find_neighbors`, as for ``convscope neighbors``
(same images, same distances). A query image must be embedded by the atlas's model, so it runs
on the worker that owns the model; a query by index reads stored embeddings in the request thread.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..errors import BadArgument
from ..methods.dataset.neighbors import Metric
from ..tasks.atlas import find_neighbors
from ..tasks.atlas_map import item_rows
from .pages import render
from .params import parse_choice, parse_int
from .state import Service

router = APIRouter()

METRICS = ("cosine", "l2")
MAX_K = 200
"""Most neighbours one request may ask for (the panel shows a handful)."""


@router.get("/api/atlas/{atlas_id}/{layer}/neighbors")
def neighbors(state: Service, atlas_id: str, layer: str, index: str | None = None,
              image: str | None = None, k: str = "10", metric: str = "cosine") -> dict[str, Any]:
    """``{"neighbors": [...]}`` nearest first: rank, distance and the selection grid's row of each
    image (:func:`~convscope.tasks.atlas_map.item_rows`: ``label``/``prediction`` indices,
    ``label_name``/``prediction_name`` names, ``None`` where unknown)."""
    atlas = state.atlas_layer(atlas_id, layer)
    count = parse_int("k", k, 1, MAX_K)
    distance = cast(Metric, parse_choice("metric", metric, METRICS))
    if (index is None) == (image is None):
        raise BadArgument("give index=I (an atlas image) or image=REF (any image), one of them")
    if index is not None:
        entry = state.atlas_model(atlas)
        i = parse_int("index", index, 0, atlas.size - 1)
        found = find_neighbors(atlas, i, layer=layer, k=count, metric=distance)
        query: dict[str, Any] = {"index": i, "source": atlas.sources()[i]}
    else:
        assert image is not None
        entry = state.atlas_model_required(atlas)
        picture, model = state.image(image), entry.model
        found = state.jobs.run(lambda: find_neighbors(atlas, picture, model=model, layer=layer,
                                                      k=count, metric=distance), model=model)
        query = {"image": image}
    rows = item_rows(atlas, [n.index for n in found], entry.model.labels if entry else None)
    return {"atlas": atlas_id, "layer": layer, "metric": metric, "k": count, "query": query,
            "model": entry.name if entry is not None else None,  # links open the images with it
            "neighbors": [{"rank": n.rank, "distance": n.distance, **row} for n, row in zip(found, rows)]}


@router.get("/atlas/{atlas_id}/{layer}/neighbors", response_class=HTMLResponse)
def neighbors_page(request: Request, state: Service, atlas_id: str, layer: str, k: str = "10",
                   metric: str = "cosine") -> Any:
    """The neighbours panel on a page of its own: query by index, a chosen image or an upload
    (the query itself is read from the URL by the page's script and checked by the API)."""
    atlas = state.atlas_layer(atlas_id, layer)
    count = parse_int("k", k, 1, MAX_K)
    parse_choice("metric", metric, METRICS)
    return render(request, "neighbors.html", title=f"Neighbours · {atlas_id} {layer}",
                  atlas_id=atlas_id, layer=layer, size=atlas.size, model=atlas.model_name, k=count,
                  max_k=MAX_K, metric=metric, metrics=METRICS)
