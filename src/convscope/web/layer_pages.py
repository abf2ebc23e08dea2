"""The layer page and the unit page: what one layer and one channel of it compute.

``/layers/{name}``: the feature maps of the current image (one tile per channel, in the order
``?sort=`` asks), the layer's filters when it is a convolution, and every channel's feature
visualization. ``/layers/{name}/{channel}``: one unit, with visualizations from several seeds,
its activation mask on the image, its top atlas images and the classes it supports.

Feature visualizations are jobs keyed in the disk cache by the model's content key, the layer, the
channel and the settings: the page's tiles ask ``/api/layers/{name}/{channel}/visualization``
as they scroll into view, and a cached one is answered at once with its file's address. The
activations of the current image are computed once per (model, image, layer) on the worker and
kept in a small in-memory cache, so the tile of each channel only colours a map.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from PIL import Image

from ..data import list_samples
from ..errors import BadArgument, ConvscopeError
from ..model import LayerInfo
from ..render import png_bytes, to_pil
from ..render.features import feature_map_tiles
from ..render.report import data_uri
from ..tasks.atlas import top_patches
from ..tasks.inside import activations, filters, find_layer, mask, unit_classes
from ..tasks.visualize import channel_visualization
from .cache import JobResult
from .errors import NotFound
from .images import image_digest, list_images, resolve_image
from .model_page import table_of
from .pages import render
from .state import AppState, ModelEntry, app_state

if TYPE_CHECKING:
    from ..methods.features import FeatureMaps

router = APIRouter()

SORTS = ("mean", "max", "index")
STEPS = 64
"""Default optimizer steps of a tile's visualization: about half a second for digits_cnn on one
CPU thread, one to a few seconds for EfficientNet-Lite0 at 96 px (measured 1.3 s for 32 steps)."""
SIZE = 96
"""Largest default visualization size (smaller models use their own input size)."""
SEEDS = (0, 1, 2, 3)
"""Seeds of the unit page's visualizations."""
LIMITS = {"steps": (1, 2048), "size": (8, 512), "seed": (0, 2**31 - 1)}
TILE_PX = 96
_KEEP_MAPS = 8
"""(model, image, layer) activations kept in memory for the feature-map tiles."""


class _Memory:
    """What this app keeps between requests: recent activations."""

    def __init__(self) -> None:
        self.maps: OrderedDict[tuple[str, str, str], FeatureMaps] = OrderedDict()
        self.lock = threading.Lock()


def _memory(state: AppState) -> _Memory:
    with _MEMORY_LOCK:
        memory = state.__dict__.get("layer_pages")
        if memory is None:
            memory = state.__dict__["layer_pages"] = _Memory()
        return memory


_MEMORY_LOCK = threading.Lock()



def _png_response(picture: Image.Image | Any) -> Response:
    return Response(png_bytes(picture), media_type="image/png", headers={"Cache-Control": "no-cache"})


# -- checking what the URL names --------------------------------------------------------------
def _layer(state: AppState, entry: ModelEntry, name: str) -> LayerInfo:
    """The layer's row (type, output shape); unknown names are a 404 with the closest names."""
    return find_layer(entry.model, name, table_of(state, entry).rows)


def _lookup(request: Request, model: str | None, name: str) -> tuple[AppState, ModelEntry, LayerInfo]:
    """What every route of these pages starts from: the app, the model and the layer the URL names."""
    state = app_state(request)
    entry = state.model(model)
    return state, entry, _layer(state, entry, name)


def _channels(row: LayerInfo) -> int:
    """The layer's channels as every reader counts them: C of its map (tokens, channels-last
    maps read as model/tokens.py reads them), else the first axis of its output."""
    shape = row.map_shape or row.output_shape
    if not shape:
        raise NotFound(f"layer {row.name!r} outputs no tensor with channels")
    return int(shape[0])


def _channel(row: LayerInfo, channel: str) -> int:
    """A channel of the layer from the URL: a whole number in range, else a 404 that says the range."""
    total = _channels(row)
    if not channel.isdigit() or not 0 <= int(channel) < total:
        raise NotFound(f"channel {channel!r}: layer {row.name!r} has {total} channels, "
                       f"0..{total - 1}")
    return int(channel)


def _spatial(row: LayerInfo) -> bool:
    """Whether the layer's output reads as a map of the image (the one reader's verdict)."""
    return row.map_shape is not None


def _setting(name: str, value: int | None, default: int) -> int:
    value = default if value is None else value
    lo, hi = LIMITS[name]
    if not lo <= value <= hi:
        raise BadArgument(f"{name}={value}; use {lo}..{hi}")
    return value


def _image_ref(image: str | None) -> str:
    """The image of the page: the one in the address, else the first sample."""
    return image or "sample:" + next(iter(list_samples()))


def _links(request: Request, row: LayerInfo, ref: str, entry: ModelEntry) -> dict[str, Any]:
    """The layer's name as a path segment and the query every link of the page carries (the
    image, the model and visualization settings given in the address)."""
    carried = {k: request.query_params[k] for k in ("steps", "size") if k in request.query_params}
    return {"layer_path": quote(row.name, safe=""),
            "query": urlencode({"image": ref, "model": entry.name, **carried})}


def _vis_settings(entry: ModelEntry, seed: int | None = None, size: int | None = None,
                  steps: int | None = None) -> dict[str, int]:
    """The visualization settings from the URL, checked; the defaults suit a CPU."""
    defaults = {"steps": STEPS, "size": min(SIZE, max(entry.model.input_size)), "seed": 0}
    return {k: _setting(k, v, defaults[k]) for k, v in
            (("seed", seed), ("size", size), ("steps", steps))}


def _vis_key(state: AppState, entry: ModelEntry, layer: str, unit: int,
             settings: dict[str, int]) -> str:
    return state.cache.key("visualization", entry.key, layer, unit, settings)


def _cached_pictures(state: AppState, entry: ModelEntry, layer: str,
                     units: list[tuple[int, dict[str, int]]]) -> dict[str, str]:
    """``"channel/seed"`` -> the cached picture's address, for the tiles already computed: the
    page puts them in directly, so a second visit asks the server nothing more."""
    found = {}
    for unit, settings in units:
        key = _vis_key(state, entry, layer, unit, settings)
        if (state.cache.folder(key) / "data.json").is_file():
            found[f"{unit}/{settings['seed']}"] = f"/api/results/{key}/visualization.png"
    return found


# -- the activations of the current image -----------------------------------------------------
def _activations(state: AppState, entry: ModelEntry, ref: str, layer: str) -> FeatureMaps:
    """The whole layer's maps for one image (channels in index order), computed once."""
    image = resolve_image(state, ref)  # decoded once (web.images keeps recent images)
    memory, key = _memory(state), (entry.key, image_digest(image), layer)
    with memory.lock:
        found = memory.maps.get(key)
        if found is not None:
            memory.maps.move_to_end(key)
            return found
    maps = state.jobs.run(lambda: activations(entry.model, image, layer))
    with memory.lock:
        memory.maps[key] = maps
        while len(memory.maps) > _KEEP_MAPS:
            memory.maps.popitem(last=False)
    return maps


def _order(maps: FeatureMaps, sort: str) -> list[dict[str, Any]]:
    """The channels with their mean and max on this image, largest first (``index``: in order)."""
    rows = [{"channel": c, "mean": round(m, 4), "max": round(x, 4)} for c, m, x in
            zip(maps.channels.tolist(), maps.mean[0].tolist(), maps.max[0].tolist())]
    if sort in ("mean", "max"):
        rows.sort(key=lambda r: -r[sort])
    return rows


# -- pages ------------------------------------------------------------------------------------
@router.get("/layers/{name}")
def layer_page(request: Request, name: str, image: str | None = None, model: str | None = None,
               sort: str = "mean", seed: int | None = None, size: int | None = None,
               steps: int | None = None) -> Response:
    state, entry, row = _lookup(request, model, name)
    vis = _vis_settings(entry, seed, size, steps)
    if sort not in SORTS:
        raise BadArgument(f"sort={sort!r}; use one of {', '.join(SORTS)}")
    ref = _image_ref(image)
    maps: list[dict[str, Any]] = []
    maps_error = None
    if _spatial(row):
        maps = _order(_activations(state, entry, ref, row.name), sort)
    else:
        maps_error = (f"Feature maps need an output that reads as a map of the image (channels, "
                      f"height, width), or tokens; layer {row.name!r} outputs "
                      f"{list(row.output_shape or [])}.")
    try:
        shown = filters(entry.model, row.name)
        filter_view = {"title": shown.title, "picture": data_uri(shown.picture), **shown.summary}
    except ConvscopeError as err:
        filter_view = {"reason": f"Filters cannot be shown for this layer: {err}"}
    return render(request, "layer.html", title=f"{row.name} · layer", layer=row, image=ref,
                  model=entry.name, sort=sort, sorts=SORTS, maps=maps, maps_error=maps_error,
                  channels=_channels(row) if row.output_shape else 0, filters=filter_view,
                  images=list_images(state), vis=vis, **_links(request, row, ref, entry),
                  cached=_cached_pictures(state, entry, row.name,
                                          [(c, vis) for c in range(_channels(row))]
                                          if row.output_shape else []))


@router.get("/layers/{name}/{channel}")
def unit_page(request: Request, name: str, channel: str, image: str | None = None,
              model: str | None = None, size: int | None = None,
              steps: int | None = None) -> Response:
    state, entry, row = _lookup(request, model, name)
    unit = _channel(row, channel)
    vis = _vis_settings(entry, None, size, steps)
    ref = _image_ref(image)
    atlases = [a for a in state.atlases.values() if _atlas_fits(a, entry, row.name)]
    return render(request, "unit.html", title=f"{row.name} channel {unit} · unit", layer=row,
                  channel=unit, channels=_channels(row), image=ref, model=entry.name,
                  images=list_images(state),
                  seeds=SEEDS, vis=vis, atlases=[a.id for a in atlases],
                  spatial=_spatial(row), **_links(request, row, ref, entry),
                  cached=_cached_pictures(state, entry, row.name,
                                          [(unit, {**vis, "seed": s}) for s in SEEDS]))


def _atlas_fits(entry: Any, model: ModelEntry, layer: str) -> bool:
    """An open atlas of this model (by the model name it was scanned with) that holds the layer."""
    try:
        atlas = entry.atlas
    except ConvscopeError:
        return False
    return layer in atlas.layers and atlas.model_name in (model.name, model.spec, model.model.name)


# -- API: feature maps, filters, mask ---------------------------------------------------------
@router.get("/api/layers/{name}/featuremaps")
def featuremap_list(request: Request, name: str, image: str | None = None,
                    model: str | None = None, sort: str = "mean") -> dict[str, Any]:
    """The channels of the layer for the image, in ``sort`` order, with their mean and max."""
    state, entry, row = _lookup(request, model, name)
    if sort not in SORTS:
        raise BadArgument(f"sort={sort!r}; use one of {', '.join(SORTS)}")
    ref = _image_ref(image)
    maps = _activations(state, entry, ref, row.name)
    return {"layer": row.name, "image": ref, "shape": [maps.total_channels, *maps.maps.shape[-2:]],
            "sort": sort, "channels": _order(maps, sort)}


@router.get("/api/layers/{name}/featuremap/{channel}.png")
def featuremap_tile(request: Request, name: str, channel: str, image: str | None = None,
                    model: str | None = None) -> Response:
    """One channel's map for the image, on its own colour scale."""
    state, entry, row = _lookup(request, model, name)
    unit = _channel(row, channel)
    maps = _activations(state, entry, _image_ref(image), row.name).maps[0]
    return _png_response(feature_map_tiles(maps[unit:unit + 1], tile_px=TILE_PX)[0])


@router.get("/api/layers/{name}/filters.png")
def filter_picture(request: Request, name: str, model: str | None = None, page: int = 0) -> Response:
    """The layer's filters (a Conv2d's weights); other layers answer 404 saying why."""
    _, entry, row = _lookup(request, model, name)
    try:
        view = filters(entry.model, row.name, page=page)
    except ConvscopeError as err:
        raise NotFound(f"filters cannot be shown: {err}") from None
    return _png_response(view.picture)


@router.get("/api/layers/{name}/{channel}/mask.png")
def mask_picture(request: Request, name: str, channel: str, image: str | None = None,
                 model: str | None = None) -> Response:
    """Where the channel fires on the image (top 0.5% of its upsampled activation)."""
    state, entry, row = _lookup(request, model, name)
    unit = _channel(row, channel)
    ref = _image_ref(image)
    picture = resolve_image(state, ref)
    view = state.jobs.run(lambda: mask(entry.model, picture, row.name, unit, name=ref))
    return _png_response(view.picture)


# -- API: jobs --------------------------------------------------------------------------------
@router.get("/api/layers/{name}/{channel}/visualization")
def visualization_job(request: Request, name: str, channel: str, model: str | None = None,
                      seed: int | None = None, size: int | None = None,
                      steps: int | None = None) -> dict[str, Any]:
    """Submit (or find cached) the channel's feature visualization; answers the job JSON, whose
    ``files["visualization.png"]`` is the picture once it is done."""
    state, entry, row = _lookup(request, model, name)
    unit = _channel(row, channel)
    settings = _vis_settings(entry, seed, size, steps)
    key = _vis_key(state, entry, row.name, unit, settings)

    def run(progress: Any) -> JobResult:
        made = channel_visualization(entry.model, row.name, unit, progress=progress, **settings)
        return JobResult(data={**made.summary, "layer": row.name, "channel": unit, **settings},
                         files={"visualization.png": png_bytes(made.picture)})

    title = f"visualize {row.name} ch {unit} (seed {settings['seed']})"
    return state.jobs.submit("visualization", title, run, key=key).as_json()


@router.get("/api/layers/{name}/{channel}/classes")
def classes_job(request: Request, name: str, channel: str, image: str | None = None,
                model: str | None = None, k: int = 5) -> dict[str, Any]:
    """The classes the channel supports most (and opposes most), as a cached job."""
    state, entry, row = _lookup(request, model, name)
    unit = _channel(row, channel)
    if not 1 <= k <= 100:
        raise BadArgument(f"k={k}; use 1..100")
    ref = _image_ref(image)
    picture = resolve_image(state, ref)
    key = state.cache.key("unit-classes", entry.key, row.name, unit, image_digest(picture), k)

    def run(progress: Any) -> JobResult:
        found = unit_classes(entry.model, row.name, unit, k, image=picture)
        return JobResult(data={"layer": found.layer, "channel": found.channel,
                               "method": found.method, "reason": found.reason,
                               "classes": found.classes, "opposed": found.opposed})

    return state.jobs.submit("unit-classes", f"classes of {row.name} ch {unit}", run,
                             key=key).as_json()


@router.get("/api/layers/{name}/{channel}/top")
def top_images(request: Request, name: str, channel: str, atlas: str, model: str | None = None,
               k: int = 8) -> dict[str, Any]:
    """The atlas's top-k images of the channel, each with its receptive-field patch (data URIs)."""
    state, entry, row = _lookup(request, model, name)
    unit = _channel(row, channel)
    found = state.atlas(atlas)
    if not _atlas_fits(found, entry, row.name):
        raise NotFound(f"atlas {atlas!r} was not scanned with model {entry.name!r} at layer "
                       f"{row.name!r}")
    if not 1 <= k <= 64:
        raise BadArgument(f"k={k}; use 1..64")
    patches = state.jobs.run(lambda: top_patches(found.atlas, entry.model, row.name, unit, k))
    return {"atlas": atlas, "layer": row.name, "channel": unit, "top": [
        {"rank": p.record.rank, "index": p.record.index, "value": round(p.record.value, 4),
         "source": p.record.source, "box": [p.box.top, p.box.left, p.box.bottom, p.box.right],
         "image": f"atlas:{atlas}/{p.record.index}",
         "patch": data_uri(to_pil(p.crop)), "thumb": data_uri(to_pil(p.image))}
        for p in patches]}
