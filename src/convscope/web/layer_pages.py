"""The layer page (``/layers/{name}``: the image's feature maps, the filters, every channel's
visualization) and the unit page (``/layers/{name}/{channel}``: one channel's visualizations from
several seeds, its mask on the image, its top atlas images and its classes). Visualizations are
cached jobs that the tiles ask for as they scroll into view.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..data import list_samples
from ..errors import ConvscopeError
from ..model import LayerInfo
from ..render import png_bytes, to_pil
from ..render.features import feature_map_tiles
from ..render.report import data_uri
from ..tasks.atlas import top_patches
from ..tasks.inside import channel_stats, filters, mask, unit_classes
from ..tasks.visualize import channel_visualization
from .cache import JobResult
from .errors import NotFound
from .images import list_images
from .job_routes import png_response
from .pages import render
from .params import parse_choice, parse_int
from .state import AppState, ModelEntry, Service

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
LIMITS = {"steps": (1, 2048), "size": (8, 512), "seed": (0, 2**31 - 1)}
TILE_PX = 96
MAX_TOP = 64
MAX_CLASSES = 100


# -- checking what the URL names --------------------------------------------------------------
def _unit(state: AppState, model: str | None, name: str, channel: str) -> tuple[ModelEntry, LayerInfo, int]:
    """The model, the layer and its channel the URL names (a 404 says the channels' range)."""
    entry, row = state.layer(model, name)
    total = row.channels
    if not channel.isdigit() or len(channel) > 9 or not 0 <= int(channel) < total:
        raise NotFound(f"channel {channel!r}: layer {row.name!r} has {total} channels, 0..{total - 1}"
                       if total else f"layer {row.name!r} outputs no tensor with channels")
    return entry, row, int(channel)


def _image_ref(state: AppState, entry: ModelEntry, image: str | None) -> str:
    """The image of the page: the one in the address, else the first sample; a one-channel
    model (digits) gets the first image of an atlas it made, or of the served folders, when the
    server has one (a cat photo says little to a digit classifier)."""
    if image:
        return image
    if entry.model.channels == 1:
        for atlas_id, found in state.open_atlases():
            if entry.made(found) and found.size > 0:
                return f"atlas:{atlas_id}/0"
        folder = next((c.ref for c in list_images(state) if c.group != "samples"), None)
        if folder is not None:
            return folder
    return "sample:" + next(iter(list_samples()))


def _page(request: Request, state: AppState, entry: ModelEntry, row: LayerInfo, ref: str) -> dict[str, Any]:
    """What both pages show, and the query every link carries (image, model, visualization settings)."""
    carried = {k: request.query_params[k] for k in ("steps", "size") if k in request.query_params}
    return {"layer": row, "channels": row.channels, "image": ref, "model": entry.name,
            "images": list_images(state), "layer_path": quote(row.name, safe=""),
            "query": urlencode({"image": ref, "model": entry.name, **carried})}


def _vis_settings(entry: ModelEntry, seed: str | None = None, size: str | None = None,
                  steps: str | None = None) -> dict[str, int]:
    """The visualization settings from the URL, checked; the defaults suit a CPU."""
    defaults = {"steps": STEPS, "size": min(SIZE, max(entry.model.input_size)), "seed": 0}
    return {k: parse_int(k, v, *LIMITS[k], default=defaults[k]) for k, v in
            (("seed", seed), ("size", size), ("steps", steps))}


def _vis_key(state: AppState, entry: ModelEntry, layer: str, unit: int,
             settings: dict[str, int]) -> str:
    return state.cache.key("visualization", entry.key, layer, unit, settings)


def _cached_pictures(state: AppState, entry: ModelEntry, layer: str,
                     units: list[tuple[int, dict[str, int]]]) -> dict[str, str]:
    """``"channel/seed"`` -> the address of each picture computed already (a second visit asks nothing)."""
    found = {}
    for unit, settings in units:
        key = _vis_key(state, entry, layer, unit, settings)
        if (state.cache.folder(key) / "data.json").is_file():
            found[f"{unit}/{settings['seed']}"] = f"/api/results/{key}/visualization.png"
    return found


def _order(maps: FeatureMaps, sort: str) -> list[dict[str, Any]]:
    """The channels with their mean and max on this image, largest first (``index``: in order)."""
    rows = channel_stats(maps)
    if sort in ("mean", "max"):
        rows.sort(key=lambda r: -r[sort])
    return rows


# -- pages ------------------------------------------------------------------------------------
@router.get("/layers/{name}")
def layer_page(request: Request, state: Service, name: str, image: str | None = None,
               model: str | None = None, sort: str = "mean", seed: str | None = None, size: str | None = None,
               steps: str | None = None) -> Response:
    entry, row = state.layer(model, name)
    vis = _vis_settings(entry, seed, size, steps)
    parse_choice("sort", sort, SORTS)
    ref = _image_ref(state, entry, image)
    maps, maps_error = [], None
    if row.map_shape is not None:
        maps = _order(state.feature_maps(entry, state.image(ref), row.name), sort)
    else:
        maps_error = (f"Feature maps need an output that reads as a map of the image (channels, "
                      f"height, width), or tokens; layer {row.name!r} outputs "
                      f"{list(row.output_shape or [])}.")
    try:
        shown = filters(entry.model, row.name)
        filter_view = {"title": shown.title, "picture": data_uri(shown.picture), **shown.summary}
    except ConvscopeError as err:
        filter_view = {"reason": f"Filters cannot be shown for this layer: {err}"}
    return render(request, "layer.html", title=f"{row.name} · layer", sort=sort, sorts=SORTS, maps=maps,
                  maps_error=maps_error, filters=filter_view, vis=vis,
                  **_page(request, state, entry, row, ref),
                  cached=_cached_pictures(state, entry, row.name, [(c, vis) for c in range(row.channels)]))


@router.get("/layers/{name}/{channel}")
def unit_page(request: Request, state: Service, name: str, channel: str, image: str | None = None,
              model: str | None = None, size: str | None = None,
              steps: str | None = None) -> Response:
    entry, row, unit = _unit(state, model, name, channel)
    vis = _vis_settings(entry, None, size, steps)
    ref = _image_ref(state, entry, image)
    return render(request, "unit.html", title=f"{row.name} channel {unit} · unit", channel=unit,
                  seeds=SEEDS, vis=vis, atlases=state.atlases_of(entry, row.name),
                  spatial=row.map_shape is not None, **_page(request, state, entry, row, ref),
                  cached=_cached_pictures(state, entry, row.name, [(unit, {**vis, "seed": s})
                                                                   for s in SEEDS]))


# -- API: feature maps, filters, mask ---------------------------------------------------------
@router.get("/api/layers/{name}/featuremaps")
def featuremap_list(state: Service, name: str, image: str | None = None,
                    model: str | None = None, sort: str = "mean") -> dict[str, Any]:
    entry, row = state.layer(model, name)
    parse_choice("sort", sort, SORTS)
    ref = _image_ref(state, entry, image)
    maps = state.feature_maps(entry, state.image(ref), row.name)
    return {"layer": row.name, "image": ref, "shape": [maps.total_channels, *maps.maps.shape[-2:]],
            "sort": sort, "channels": _order(maps, sort)}


@router.get("/api/layers/{name}/featuremap/{channel}.png")
def featuremap_tile(state: Service, name: str, channel: str, image: str | None = None,
                    model: str | None = None) -> Response:
    """One channel's map for the image, on its own colour scale."""
    entry, row, unit = _unit(state, model, name, channel)
    maps = state.feature_maps(entry, state.image(_image_ref(state, entry, image)), row.name).maps[0]
    return png_response(feature_map_tiles(maps[unit:unit + 1], tile_px=TILE_PX)[0])


@router.get("/api/layers/{name}/filters.png")
def filter_picture(state: Service, name: str, model: str | None = None, page: int = 0) -> Response:
    """The layer's filters (a Conv2d's weights); other layers answer 404 saying why."""
    entry, row = state.layer(model, name)
    try:
        view = filters(entry.model, row.name, page=page)
    except ConvscopeError as err:
        raise NotFound(f"filters cannot be shown: {err}") from None
    return png_response(view.picture)


@router.get("/api/layers/{name}/{channel}/mask.png")
def mask_picture(state: Service, name: str, channel: str, image: str | None = None,
                 model: str | None = None) -> Response:
    """Where the channel fires on the image (top 0.5% of its upsampled activation)."""
    entry, row, unit = _unit(state, model, name, channel)
    ref = _image_ref(state, entry, image)
    picture = state.image(ref)
    view = state.jobs.run(lambda: mask(entry.model, picture, row.name, unit, name=ref), model=entry.model)
    return png_response(view.picture)


# -- API: jobs --------------------------------------------------------------------------------
@router.get("/api/layers/{name}/{channel}/visualization")
def visualization_job(state: Service, name: str, channel: str, model: str | None = None,
                      seed: str | None = None, size: str | None = None,
                      steps: str | None = None) -> dict[str, Any]:
    """Submit (or find cached) the channel's feature visualization; answers the job JSON, whose
    ``files["visualization.png"]`` is the picture once it is done."""
    entry, row, unit = _unit(state, model, name, channel)
    settings = _vis_settings(entry, seed, size, steps)
    key = _vis_key(state, entry, row.name, unit, settings)

    def run(progress: Any) -> JobResult:
        made = channel_visualization(entry.model, row.name, unit, progress=progress, **settings)
        return JobResult(data={**made.summary, "layer": row.name, "channel": unit, **settings},
                         files={"visualization.png": png_bytes(made.picture)})

    title = f"visualize {row.name} ch {unit} (seed {settings['seed']})"
    return state.jobs.submit("visualization", title, run, key=key).as_json()


@router.get("/api/layers/{name}/{channel}/classes")
def classes_job(state: Service, name: str, channel: str, image: str | None = None,
                model: str | None = None, k: str = "5") -> dict[str, Any]:
    """The classes the channel supports most (and opposes most), as a cached job."""
    entry, row, unit = _unit(state, model, name, channel)
    count = parse_int("k", k, 1, MAX_CLASSES)
    picture = state.image(_image_ref(state, entry, image))
    key = state.cache.key("unit-classes", entry.key, row.name, unit, state.digest(picture), count)

    def run(progress: Any) -> JobResult:
        return JobResult(data=asdict(unit_classes(entry.model, row.name, unit, count, image=picture)))

    return state.jobs.submit("unit-classes", f"classes of {row.name} ch {unit}", run,
                             key=key).as_json()


@router.get("/api/layers/{name}/{channel}/top")
def top_images(state: Service, name: str, channel: str, atlas: str, model: str | None = None,
               k: str = "8") -> dict[str, Any]:
    """The atlas's top-k images of the channel, each with its receptive-field patch (data URIs)."""
    entry, row, unit = _unit(state, model, name, channel)
    found = state.atlas(atlas)
    if atlas not in state.atlases_of(entry, row.name):
        raise NotFound(f"atlas {atlas!r} was not scanned with model {entry.name!r} at layer "
                       f"{row.name!r}")
    count = parse_int("k", k, 1, MAX_TOP)
    patches = state.jobs.run(lambda: top_patches(found, entry.model, row.name, unit, count),
                             model=entry.model)
    return {"atlas": atlas, "layer": row.name, "channel": unit, "top": [
        {"rank": p.record.rank, "index": p.record.index, "value": round(p.record.value, 4),
         "source": p.record.source, "box": [p.box.top, p.box.left, p.box.bottom, p.box.right],
         "image": f"atlas:{atlas}/{p.record.index}",
         "patch": data_uri(to_pil(p.crop)), "thumb": data_uri(to_pil(p.image))}
        for p in patches]}
