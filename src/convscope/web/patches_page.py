"""Every channel's top patches of an atlas layer on one page, loaded lazily as it scrolls: each
tile is the channel's top-k images cropped to the receptive field where each peaked
(:func:`convscope.tasks.atlas.top_patches`), computed on the model's worker once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from PIL import Image

from ..data.atlas import Atlas
from ..model import Model
from ..render import png_bytes
from ..render.grid import image_grid
from ..tasks.atlas import top_patches
from .job_routes import file_response
from .pages import render
from .params import parse_int
from .state import Service

router = APIRouter()

TILE_PX = 48
"""Each patch is drawn in a box this size (small fields enlarged by whole pixels)."""
MAX_K = 16
NAME = "patches.png"


def patches_png(model: Model, atlas: Atlas, layer: str, channel: int, k: int) -> bytes:
    """One row of a channel's top-``k`` patches, each captioned with its activation."""
    patches = top_patches(atlas, model, layer, channel, k)
    if not patches:
        picture = Image.new("RGB", (TILE_PX, TILE_PX), "lightgray")  # no image activated it
    else:
        picture = image_grid([p.crop for p in patches], captions=[f"{p.record.value:.3g}" for p in patches],
                             ncols=len(patches), tile_size=TILE_PX, upscale="auto", pad=2,
                             font_size=10, caption_lines=1)
    return png_bytes(picture)


@router.get("/atlas/{atlas_id}/{layer}/patches", response_class=HTMLResponse)
def patches_page(request: Request, state: Service, atlas_id: str, layer: str, k: str | None = None) -> Any:
    """The grid page: one lazily loaded tile per channel, each linking to its unit page."""
    atlas = state.atlas_layer(atlas_id, layer)
    entry = state.atlas_model_required(atlas)
    count = parse_int("k", k, 1, MAX_K, default=min(atlas.k, 8))
    return render(request, "patches.html", title=f"{layer} top patches · {atlas_id}",
                  atlas_id=atlas_id, layer=layer, k=count,
                  channels=atlas.channels[layer], model=entry.name, atlas_size=atlas.size)


@router.get("/api/atlas/{atlas_id}/{layer}/patches/{channel}.png")
def patches_tile(state: Service, atlas_id: str, layer: str, channel: str, k: str = "8") -> Response:
    """A channel's top patches as PNG (cached on disk by model, atlas, layer, channel and k)."""
    atlas = state.atlas_layer(atlas_id, layer)
    c = parse_int("channel", channel, 0, atlas.channels[layer] - 1)
    count = parse_int("k", k, 1, MAX_K)
    entry = state.atlas_model_required(atlas)
    key = state.cache.key("patches", entry.key, atlas_id, str(atlas.path), layer, c, count)
    return file_response(NAME, path=state.cache.file_made(key, NAME, lambda: state.jobs.run(
        lambda: patches_png(entry.model, atlas, layer, c, count), model=entry.model)))
