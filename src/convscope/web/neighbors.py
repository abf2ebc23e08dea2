"""The neighbours panel's data: the atlas images nearest to a map point or to any image.

The answer comes from :func:`convscope.tasks.atlas.find_neighbors`, the function behind
``convscope neighbors``, so the web app and the CLI return the same images at the same distances
(exact search; FAISS when installed, for large atlases). A query by index reads stored
embeddings only and runs in the request thread; a query image must be embedded by the atlas's
model, so it runs on the worker that owns the model.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..data.atlas import Atlas
from ..errors import BadArgument
from ..methods.dataset.neighbors import Metric
from ..tasks.atlas import Neighbor, find_neighbors
from .errors import NotFound
from .images import resolve_image
from .pages import render
from .state import AppState, ModelEntry, app_state

router = APIRouter()

METRICS = ("cosine", "l2")
MAX_K = 200
"""Most neighbours one request may ask for (the panel shows a handful)."""


def parse_int(name: str, text: str, low: int, high: int) -> int:
    """An integer URL parameter in [low, high], or a one-line error naming it."""
    try:
        value = int(text)
    except ValueError:
        raise BadArgument(f"{name}={text!r}: give a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise BadArgument(f"{name}={value} is outside {low}..{high}")
    return value


def atlas_layer(state: AppState, atlas_id: str, layer: str) -> Atlas:
    """The open atlas ``atlas_id`` after checking that it scanned ``layer`` (404 otherwise)."""
    atlas = state.atlas(atlas_id).atlas
    if layer not in atlas.channels:
        raise NotFound(f"layer {layer!r} is not in atlas {atlas_id!r}; it has {', '.join(atlas.layers)}")
    return atlas


def served_model(state: AppState, atlas: Atlas) -> ModelEntry | None:
    """The served model the atlas was made with (by its served name, spec or model name), if any."""
    for entry in state.models.values():
        if atlas.model_name in (entry.name, entry.spec, entry.model.name):
            return entry
    return None


def atlas_model(state: AppState, atlas: Atlas) -> ModelEntry:
    """The served model the atlas was made with; refused when the server does not serve it (its
    embeddings would not be comparable)."""
    entry = served_model(state, atlas)
    if entry is None:
        raise BadArgument(f"atlas '{atlas.path.name}' was made with model {atlas.model_name!r}, "
                          f"which this server does not serve; start it with --model {atlas.model_name}")
    return entry


def parse_metric(text: str) -> Metric:
    if text not in METRICS:
        raise BadArgument(f"metric={text!r}: use cosine or l2")
    return cast(Metric, text)


def _names(names: list[str] | None, i: int) -> str | None:
    if i < 0:
        return None
    return names[i] if names is not None and i < len(names) else str(i)


def neighbor_rows(atlas: Atlas, found: list[Neighbor], model_labels: list[str] | None
                  ) -> list[dict[str, Any]]:
    """JSON rows of the panel: rank, index, distance, source, label and prediction (names and
    indices; ``None`` where unknown)."""
    labels, predictions = atlas.labels(), atlas.predictions()
    rows = []
    for n in found:
        label, pred = int(labels[n.index]), int(predictions[n.index])
        rows.append({"rank": n.rank, "index": n.index, "distance": n.distance, "source": n.source,
                     "label": _names(atlas.class_names, label),
                     "label_index": label if label >= 0 else None,
                     "prediction": _names(model_labels, pred),
                     "prediction_index": pred if pred >= 0 else None})
    return rows


@router.get("/api/atlas/{atlas_id}/{layer}/neighbors")
def neighbors(request: Request, atlas_id: str, layer: str, index: str | None = None,
              image: str | None = None, k: str = "10", metric: str = "cosine") -> dict[str, Any]:
    """``{"neighbors": [{index, distance, source, label, prediction, ...}]}`` nearest first."""
    state = app_state(request)
    atlas = atlas_layer(state, atlas_id, layer)
    count = parse_int("k", k, 1, MAX_K)
    distance = parse_metric(metric)
    if (index is None) == (image is None):
        raise BadArgument("give index=I (an atlas image) or image=REF (any image), one of them")
    if index is not None:
        entry = served_model(state, atlas)
        i = parse_int("index", index, 0, atlas.size - 1)
        found = find_neighbors(atlas, i, layer=layer, k=count, metric=distance)
        query: dict[str, Any] = {"index": i, "source": atlas.sources()[i]}
    else:
        assert image is not None
        entry = atlas_model(state, atlas)
        picture = resolve_image(state, image)
        model = entry.model
        found = state.jobs.run(lambda: find_neighbors(atlas, picture, model=model, layer=layer,
                                                      k=count, metric=distance), model=model)
        query = {"image": image}
    labels = entry.model.labels if entry is not None else None
    return {"atlas": atlas_id, "layer": layer, "metric": metric, "k": count, "query": query,
            "model": entry.name if entry is not None else None,  # links open the images with it
            "neighbors": neighbor_rows(atlas, found, labels)}


@router.get("/atlas/{atlas_id}/{layer}/neighbors", response_class=HTMLResponse)
def neighbors_page(request: Request, atlas_id: str, layer: str, k: str = "10",
                   metric: str = "cosine") -> Any:
    """The neighbours panel on a page of its own: query by index, a chosen image or an upload
    (the query itself is read from the URL by the page's script and checked by the API)."""
    state = app_state(request)
    atlas = atlas_layer(state, atlas_id, layer)
    count = parse_int("k", k, 1, MAX_K)
    parse_metric(metric)
    return render(request, "neighbors.html", title=f"Neighbours · {atlas_id} {layer}",
                  atlas_id=atlas_id, layer=layer, size=atlas.size, model=atlas.model_name, k=count,
                  max_k=MAX_K, metric=metric, metrics=METRICS)
