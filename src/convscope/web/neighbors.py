"""The neighbours panel's data: the atlas images nearest to a map point or to any image.

The answer comes from :func:`convscope.tasks.atlas.find_neighbors`, the function behind
``convscope neighbors``, so the web app and the CLI return the same images at the same distances
(exact search; FAISS when installed, for large atlases). A query by index reads stored
embeddings only and runs in the request thread; a query image must be embedded by the atlas's
model, so it runs on the worker that owns the model.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ..data.atlas import Atlas
from ..errors import BadArgument
from ..tasks.atlas import Neighbor, find_neighbors
from .errors import NotFound
from .images import resolve_image

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


def atlas_layer(state: Any, atlas_id: str, layer: str) -> Atlas:
    """The open atlas ``atlas_id`` after checking that it scanned ``layer`` (404 otherwise)."""
    atlas: Atlas = state.atlas(atlas_id).atlas
    if layer not in atlas.channels:
        raise NotFound(f"layer {layer!r} is not in atlas {atlas_id!r}; it has {', '.join(atlas.layers)}")
    return atlas


def served_model(state: Any, atlas: Atlas, *, required: bool) -> Any:
    """The served model an atlas was made with (by name), or None; ``required``: refuse when
    the server does not serve it."""
    entry = state.models.get(atlas.model_name)
    if entry is None and required:
        raise BadArgument(f"atlas '{atlas.path.name}' was made with model {atlas.model_name!r}, "
                          f"which this server does not serve; start it with --model {atlas.model_name}")
    return entry


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
    state = request.app.state.cs
    atlas = atlas_layer(state, atlas_id, layer)
    count = parse_int("k", k, 1, MAX_K)
    if metric not in METRICS:
        raise BadArgument(f"metric={metric!r}: use cosine or l2")
    if (index is None) == (image is None):
        raise BadArgument("give index=I (an atlas image) or image=REF (any image), one of them")
    entry = served_model(state, atlas, required=image is not None)
    if index is not None:
        i = parse_int("index", index, 0, atlas.size - 1)
        found = find_neighbors(atlas, i, layer=layer, k=count, metric=metric)  # type: ignore[arg-type]
        query: dict[str, Any] = {"index": i, "source": atlas.sources()[i]}
    else:
        assert entry is not None and image is not None
        picture = resolve_image(state, image)
        model = entry.model
        found = state.jobs.run(lambda: find_neighbors(atlas, picture, model=model, layer=layer,
                                                      k=count, metric=metric))  # type: ignore[arg-type]
        query = {"image": image}
    labels = entry.model.labels if entry is not None else None
    return {"atlas": atlas_id, "layer": layer, "metric": metric, "k": count, "query": query,
            "neighbors": neighbor_rows(atlas, found, labels)}
