"""The dataset map's server side: the atlas list page, the map page and ``/api/atlas``. The
projection is a job whose float32 coordinates are cached on disk and served as raw bytes; no
handler here touches a model, so a long projection on the worker never stalls a map being browsed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel

from ..data.atlas import Atlas
from ..errors import BadArgument
from ..render import png_bytes
from ..render.tiles import thumbnail_tile
from ..tasks import atlas_map
from .cache import JobResult
from .errors import NotFound
from .job_routes import HOUR_CACHE, file_response, png_response
from .pages import render
from .params import parse_choice
from .state import AppState, Service

router = APIRouter()
SEED = 0
COLORS = ("label", "prediction", "correct", "confidence")
COORDS_FILE = "coords.bin"
TILE_FILE = "tile.png"


class ProjectionRequest(BaseModel):
    method: str = "pca"
    align_to: str | None = None
    wait: bool = False


class Selection(BaseModel):
    indices: list[Any]
    method: str = "pca"
    align_to: str | None = None


# ---- lookups: every URL part checked against the app's own tables ----------------------------

def _align_target(state: AppState, align_to: str | None) -> tuple[str, str, Atlas] | None:
    return state.atlas_ref("align_to", align_to) if align_to else None


def _prediction_names(state: AppState, atlas: Atlas) -> list[str] | None:
    """The class names of the model the atlas was made with, when that model is served."""
    entry = state.atlas_model(atlas)
    return list(entry.model.labels) if entry is not None and entry.model.labels else None


# ---- projections: cached on disk, computed by a job ------------------------------------------
def _coords_key(state: AppState, atlas: Atlas, layer: str, method: str,
                target: tuple[str, str, Atlas] | None = None) -> str:
    own = state.cache.key("atlas-map", atlas.stamp(layer), layer, method, SEED)
    return own if target is None else state.cache.key(
        "atlas-map-aligned", own, _coords_key(state, target[2], target[1], method))


def _computed(state: AppState, atlas_id: str, atlas: Atlas, layer: str, method: str,
              align_to: str | None) -> str:
    """The cache key of the map's coordinates; a 404 while they are not computed yet."""
    key = _coords_key(state, atlas, layer, method, _align_target(state, align_to))
    if state.cache.get(key) is None:
        aligned = f" aligned to {align_to}" if align_to else ""
        raise NotFound(f"the {method} map of {atlas_id}:{layer}{aligned} is not computed yet; "
                       f"POST /api/atlas/{atlas_id}/{layer}/projection to compute it")
    return key


def _coords(state: AppState, key: str) -> np.ndarray:
    return np.fromfile(state.cache.file(key, COORDS_FILE), dtype="<f4").reshape(-1, 2)


def _projected(state: AppState, atlas: Atlas, layer: str, method: str, progress: Any
               ) -> tuple[np.ndarray, dict[str, Any]]:
    key = _coords_key(state, atlas, layer, method)
    cached = state.cache.get(key)
    if cached is not None:
        return _coords(state, key), dict(cached.data)
    made = atlas_map.map_coords(atlas, layer, method, seed=SEED, progress=progress)
    data = {"method": method, "layer": layer, "n": atlas.size, "projected": made.projected,
            "seconds": round(made.seconds, 3)}
    state.cache.put(key, JobResult(data, {COORDS_FILE: made.coords.astype("<f4").tobytes()}))
    return made.coords, data


def _submit_projection(state: AppState, atlas_id: str, atlas: Atlas, layer: str, method: str,
                       target: tuple[str, str, Atlas] | None) -> Any:
    key = _coords_key(state, atlas, layer, method, target)
    title = f"{method} map of {atlas_id}:{layer}" + (f" aligned to {target[0]}:{target[1]}" if target else "")

    def run(progress: Any) -> JobResult:
        coords, data = _projected(state, atlas, layer, method, progress)
        data = {**data, "atlas": atlas_id, "align_to": None}
        if target is not None:
            reference, _ = _projected(state, target[2], target[1], method, progress)
            aligned = atlas_map.align_coords(coords, reference, *atlas_map.shared_points(atlas, target[2]))
            coords = aligned.coords
            data.update(align_to=f"{target[0]}:{target[1]}", shared=aligned.shared,
                        rms=round(aligned.rms, 6), scale=round(aligned.scale, 6))
        return JobResult(data, {COORDS_FILE: coords.astype("<f4").tobytes()})

    return state.jobs.submit("projection", title, run, key=key)


# ---- pages -------------------------------------------------------------------------------------
def _summary(atlas_id: str, state: AppState) -> dict[str, Any]:
    try:
        atlas = state.atlas(atlas_id)
    except BadArgument as err:  # not an atlas, or an unfinished scan: listed with the reason
        return {"id": atlas_id, "error": str(err)}
    return {"id": atlas_id, **atlas_map.map_info(atlas)}


@router.get("/atlas")
def atlases_page(request: Request, state: Service) -> Response:
    return render(request, "atlases.html", title="Atlases", atlases=list_atlases(state)["atlases"])


@router.get("/atlas/{atlas_id}/{layer}")
def map_page(request: Request, state: Service, atlas_id: str, layer: str, method: str = "pca",
             color: str = "label", align_to: str | None = None) -> Response:
    state.atlas_layer(atlas_id, layer)
    atlas_map.check_method(method)
    parse_choice("color", color, COLORS)
    _align_target(state, align_to)
    # ``embed`` (?embed=1) reaches the template through render(), which reads it from the query
    return render(request, "atlas_map.html", title=f"{atlas_id} · {layer}", atlas=atlas_id, layer=layer,
                  info=info(state, atlas_id), method=method, color=color,
                  align_to=align_to or None)


# ---- API: the atlas, its points and pictures ---------------------------------------------------
@router.get("/api/atlas")
def list_atlases(state: Service) -> dict[str, Any]:
    return {"atlases": [_summary(atlas_id, state) for atlas_id in state.atlases]}


@router.get("/api/atlas/{atlas_id}/info")
def info(state: Service, atlas_id: str) -> dict[str, Any]:
    """The map's facts, and the served model that made the atlas (``served_model``, its name in
    this server; None when not served): the map's links open its images with that model."""
    atlas = state.atlas(atlas_id)
    entry = state.atlas_model(atlas)
    return {"id": atlas_id, **atlas_map.map_info(atlas), "served_model": entry.name if entry else None}


@router.get("/api/atlas/{atlas_id}/tiles/{tile}.png")
def tile(state: Service, atlas_id: str, tile: int) -> Response:
    atlas = state.atlas(atlas_id)
    try:
        atlas_map.check_tile(atlas, tile)
    except BadArgument as err:  # outside the atlas: a picture that does not exist
        raise NotFound(str(err)) from err
    side = atlas_map.tile_side(atlas)
    key = state.cache.key("atlas-tile", atlas.stamp(), side, tile)
    return file_response(TILE_FILE, path=state.cache.file_made(  # encoded once, then served from the cache
        key, TILE_FILE, lambda: png_bytes(thumbnail_tile(atlas_map.tile_thumbnails(atlas, tile), side))))


@router.get("/api/atlas/{atlas_id}/thumbs/{index}.png")
def thumb(state: Service, atlas_id: str, index: int) -> Response:
    atlas = state.atlas(atlas_id)
    try:
        picture = atlas_map.thumbnail(atlas, index)
    except BadArgument as err:  # outside the atlas: a picture that does not exist
        raise NotFound(str(err)) from err
    return png_response(thumbnail_tile(picture[None], 1), HOUR_CACHE)


@router.get("/api/atlas/{atlas_id}/columns/{name}")
def column(state: Service, atlas_id: str, name: str) -> Response:
    if name not in atlas_map.COLUMNS:
        raise NotFound(f"no column {name!r}; columns: {', '.join(atlas_map.COLUMNS)}")
    atlas = state.atlas(atlas_id)
    return Response(atlas_map.column_bytes(atlas, name), media_type="application/octet-stream")


@router.get("/api/atlas/{atlas_id}/search")
def search(state: Service, atlas_id: str, q: str = "") -> dict[str, Any]:
    return {"indices": atlas_map.search(state.atlas(atlas_id), q).tolist()}


@router.post("/api/atlas/{atlas_id}/items")
def items(state: Service, atlas_id: str, selection: Selection) -> dict[str, Any]:
    atlas = state.atlas(atlas_id)
    return {"rows": atlas_map.item_rows(atlas, selection.indices, _prediction_names(state, atlas))}


@router.get("/api/atlas/{atlas_id}/confusion")
def confusion(state: Service, atlas_id: str) -> dict[str, Any]:
    atlas = state.atlas(atlas_id)
    matrix = atlas_map.confusion(atlas)
    names = list(atlas.class_names or [])
    names += [str(i) for i in range(len(names), matrix.shape[0])]
    return {"class_names": names, "prediction_names": _prediction_names(state, atlas),
            "matrix": matrix.tolist()}


@router.get("/api/atlas/{atlas_id}/confusion/{true}/{predicted}")
def confusion_cell(state: Service, atlas_id: str, true: int, predicted: int) -> dict[str, Any]:
    atlas = state.atlas(atlas_id)
    return {"indices": atlas_map.confusion_cell(atlas, true, predicted).tolist()}


# ---- API: projections and exports --------------------------------------------------------------
@router.post("/api/atlas/{atlas_id}/{layer}/projection")
def projection(state: Service, atlas_id: str, layer: str, body: ProjectionRequest) -> Response:
    atlas = state.atlas_layer(atlas_id, layer)
    method = atlas_map.check_method(body.method)
    job = _submit_projection(state, atlas_id, atlas, layer, method, _align_target(state, body.align_to))
    return state.answer(job, body.wait)


@router.get("/api/atlas/{atlas_id}/{layer}/projection/{method}/coords")
def coords(state: Service, atlas_id: str, layer: str, method: str, align_to: str | None = None
           ) -> Response:
    atlas = state.atlas_layer(atlas_id, layer)
    atlas_map.check_method(method)
    key = _computed(state, atlas_id, atlas, layer, method, align_to)
    return FileResponse(str(state.cache.file(key, COORDS_FILE)), media_type="application/octet-stream")


@router.post("/api/atlas/{atlas_id}/{layer}/export")
def export(state: Service, atlas_id: str, layer: str, selection: Selection, format: str = "csv"
           ) -> Response:
    atlas = state.atlas_layer(atlas_id, layer)
    method = atlas_map.check_method(selection.method)
    if format not in atlas_map.EXPORT_FORMATS:
        raise BadArgument(f"export format {format!r}: use one of {', '.join(atlas_map.EXPORT_FORMATS)}")
    found = _coords(state, _computed(state, atlas_id, atlas, layer, method, selection.align_to))
    blob = atlas_map.export_selection(atlas, selection.indices, found, format,
                                      _prediction_names(state, atlas))
    media = "text/csv" if format == "csv" else "application/json"
    name = f"{atlas_id}-{layer}-{method}-selection.{format}"
    return Response(blob, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})
