"""The web layer's one service object: every lookup of a name a request carries, every in-memory
cache and the one policy for waiting on a job (docs/architecture.md, section 6).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from torch import Tensor

from ..data.atlas import Atlas
from ..errors import BadArgument, ConvscopeError
from ..model import LayerInfo, Model, load_model
from ..model.device import pick_device
from ..model.digest import tensor_digest, weights_digest
from ..tasks.explain import state_key
from ..tasks.inside import activations, find_layer
from ..tasks.layers import LayerTable, layer_table
from .cache import DiskCache
from .config import ServeConfig
from .errors import NotFound
from .images import folder_ids, resolve_image, unique_name
from .jobs import Job, JobManager

if TYPE_CHECKING:
    from ..methods.features import FeatureMaps

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
WAIT_SECONDS = 600.0
"""How long a request that asks to wait (``"wait": true``) waits for its job (:meth:`AppState.answer`)."""
KEEP_FEATURE_MAPS = 8
"""(model, image, layer) activations kept in memory for the feature-map tiles."""
CACHED_IMAGES, CACHED_BYTES = 32, 256 * 2**20
"""Bounds of the decoded images kept: a few pages' worth of photos (a 12 MP photo alone is 144 MB
as float32, so the byte bound is what evicts in practice)."""


class Recent(Generic[K, V]):
    """A small thread-safe LRU, bounded by a count and by the total ``weigh`` of its values (bytes).
    ``get(key, make)`` returns the value kept under ``key`` or keeps what ``make()`` returns (made
    outside the lock: a slow one holds up no other request; one heavier than the bound is handed
    out, not kept). A kept value whose ``stamp`` moved since (a tensor modified in place) is made
    again, so one careless caller cannot change what every later request sees."""

    def __init__(self, size: int, max_weight: float = math.inf, weigh: Callable[[V], float] = lambda v: 0,
                 stamp: Callable[[V], object] = lambda v: None) -> None:
        self.size, self.max_weight, self._weigh, self._stamp = size, max_weight, weigh, stamp
        self._items: OrderedDict[K, tuple[V, object]] = OrderedDict()
        self._weight = 0.0
        self._lock = threading.Lock()

    def get(self, key: K, make: Callable[[], V]) -> V:
        with self._lock:
            kept = self._items.get(key)
            if kept is not None and self._stamp(kept[0]) == kept[1]:
                self._items.move_to_end(key)
                return kept[0]
        value = make()
        if self._weigh(value) > self.max_weight:
            return value
        with self._lock:
            self._drop(key)
            self._items[key] = (value, self._stamp(value))
            self._weight += self._weigh(value)
            while len(self._items) > self.size or self._weight > self.max_weight:
                self._drop(next(iter(self._items)))
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._weight = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def _drop(self, key: K) -> None:
        if key in self._items:
            self._weight -= self._weigh(self._items.pop(key)[0])


@dataclass
class ModelEntry:
    name: str
    spec: str
    model: Model
    _key: tuple[Any, str] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def key(self) -> str:
        """A content hash (spec, preprocessing, every parameter and buffer), hashed again when
        any parameter or buffer changed identity or version since (a notebook user who goes on
        training after ``show_app`` gets new maps): cached results of other weights are never reused."""
        state = state_key(self.model)
        with self._lock:
            if self._key is None or self._key[0] != state:
                self._key = (state, weights_digest(self.model, self.spec, repr(self.model.spec))[:16])
            return self._key[1]

    def made(self, atlas: Atlas) -> bool:
        """Whether this model made ``atlas`` (by the name it was scanned with)."""
        return atlas.model_name in (self.name, self.spec, self.model.name)


class AppState:
    """Built once by :func:`convscope.web.app.create_app`; handlers receive it as :data:`Service`."""

    def __init__(self, config: ServeConfig, models: Sequence[tuple[str, Model | None]] | None = None) -> None:
        """``models``: (spec, model) pairs, the model loaded already (the CLI's with its options,
        ``show_app``'s user's own) or ``None`` to load the spec on ``config.device`` with
        ``config.model_options``; by default every spec of ``config.models``."""
        self.config = config
        self.cache = DiskCache(config.cache_dir)
        self.jobs = JobManager(self.cache)
        self.models: dict[str, ModelEntry] = {}
        for spec, model in models or [(spec, None) for spec in config.models]:
            if model is None:
                model = load_model(spec, device=pick_device(config.device), **config.model_options)  # type: ignore[arg-type]
            shown = Path(spec.split(":")[-1]).stem if "/" in spec or "\\" in spec else spec.replace(":", "-")
            name = unique_name(shown, self.models, "model")
            self.models[name] = ModelEntry(name, spec, model)
        self.image_folders = folder_ids(config.images)
        self.atlases = folder_ids(config.atlases)
        self._open_atlases: Recent[str, Atlas] = Recent(max(1, len(self.atlases)))
        self.decoded: Recent[Hashable, Tensor] = Recent(CACHED_IMAGES, CACHED_BYTES, weigh=lambda t: t.nbytes,
                                                        stamp=lambda t: t._version)
        self._digests: Recent[tuple[int, int], tuple[weakref.ref[Tensor], str]] = Recent(
            CACHED_IMAGES, stamp=lambda kept: kept[0]() is None)
        self._tables: Recent[tuple[str, str], LayerTable] = Recent(len(self.models))
        self._feature_maps: Recent[tuple[str, str, str], FeatureMaps] = Recent(KEEP_FEATURE_MAPS)

    # -- models and layers ------------------------------------------------------------------
    def model(self, name: str | None = None) -> ModelEntry:
        """The named model (the first one for ``None`` or empty); unknown names are a 404."""
        if not name:
            return next(iter(self.models.values()))
        entry = self.models.get(name)
        if entry is None:
            raise NotFound(f"model {name!r} is not served; models: {', '.join(self.models)}")
        return entry

    def layer_table(self, entry: ModelEntry, timeout: float | None = None) -> LayerTable:
        """The model's layer table, computed once on the worker that owns the model (a
        ConvscopeError when the worker stays busy past ``timeout`` seconds)."""
        return self._tables.get((entry.name, entry.spec),
                                lambda: self.jobs.run(lambda: layer_table(entry.model), timeout,
                                                          model=entry.model))

    def layer(self, model: str | None, name: str) -> tuple[ModelEntry, LayerInfo]:
        """The named model and its layer's row (``name:i`` picks one call); unknown names are a 404."""
        entry = self.model(model)
        return entry, find_layer(entry.model, name, self.layer_table(entry).rows)

    def feature_maps(self, entry: ModelEntry, picture: Tensor, layer: str) -> FeatureMaps:
        """The whole layer's maps for one image (channels in index order), computed once."""
        return self._feature_maps.get((entry.key, self.digest(picture), layer),
                                      lambda: self.jobs.run(lambda: activations(entry.model, picture, layer),
                                                                model=entry.model))

    # -- images -----------------------------------------------------------------------------
    def image(self, ref: str) -> Tensor:
        """The (3, H, W) image in [0, 1] that ``ref`` names (4xx errors for anything else)."""
        return resolve_image(self, ref)

    def digest(self, picture: Tensor) -> str:
        """A content hash of the pixels: a result cached under it never belongs to other pixels.
        Remembered per tensor and in-place version while the tensor lives (its id is then its own)."""
        return self._digests.get((id(picture), picture._version),
                                 lambda: (weakref.ref(picture), tensor_digest(picture)))[1]

    # -- atlases ----------------------------------------------------------------------------
    def atlas(self, atlas_id: str) -> Atlas:
        """The atlas ``atlas_id``, opened once (an unknown id is a 404; one that does not open, its error)."""
        path = self.atlases.get(atlas_id)
        if path is None:
            raise NotFound(f"no atlas {atlas_id!r}; atlases: "
                           f"{', '.join(self.atlases) or 'none (start with --atlas DIR)'}")
        return self._open_atlases.get(atlas_id, lambda: Atlas.open(path))

    def atlas_layer(self, atlas_id: str, layer: str) -> Atlas:
        atlas = self.atlas(atlas_id)
        if layer not in atlas.channels:
            raise NotFound(f"layer {layer!r} is not in atlas {atlas_id!r}; it has {', '.join(atlas.layers)}")
        return atlas

    def atlas_ref(self, name: str, text: str) -> tuple[str, str, Atlas]:
        """``ATLAS:LAYER`` -> (atlas id, layer, Atlas), both checked. Atlas ids hold no colon
        (see :func:`~convscope.web.images.folder_ids`), so the first colon splits: the layer
        keeps its own ``:i`` call suffix."""
        atlas_id, sep, layer = text.partition(":")
        if not sep or not atlas_id or not layer:
            raise BadArgument(f"{name}={text!r}: write it as ATLAS:LAYER (an atlas id and one of its layers)")
        return atlas_id, layer, self.atlas_layer(atlas_id, layer)

    def atlas_model(self, atlas: Atlas) -> ModelEntry | None:
        return next((entry for entry in self.models.values() if entry.made(atlas)), None)

    def atlas_model_required(self, atlas: Atlas) -> ModelEntry:
        """The served model the atlas was made with; refused when the server does not serve it
        (its embeddings would not be comparable)."""
        entry = self.atlas_model(atlas)
        if entry is None:
            raise BadArgument(f"atlas '{atlas.path.name}' was made with model {atlas.model_name!r}, "
                              f"which this server does not serve; start it with --model {atlas.model_name}")
        return entry

    def open_atlases(self) -> list[tuple[str, Atlas]]:
        """Every atlas that opens (one that does not is left out: its own page says why)."""
        found = []
        for atlas_id in self.atlases:
            try:
                found.append((atlas_id, self.atlas(atlas_id)))
            except ConvscopeError:
                continue
        return found

    def atlases_of(self, entry: ModelEntry, layer: str) -> list[str]:
        return [atlas_id for atlas_id, atlas in self.open_atlases()
                if layer in atlas.layers and entry.made(atlas)]

    # -- jobs -------------------------------------------------------------------------------
    def answer(self, job: Job, wait: bool) -> JSONResponse:
        """The one waiting policy: without ``wait`` the job as it is; with it, the finished job,
        its failure as its own 4xx, or after :data:`WAIT_SECONDS` a 202 with the job's address."""
        if wait and not job.wait(WAIT_SECONDS):
            return JSONResponse(job.as_json(), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})
        if wait and job.status != "done":
            self.jobs.value(job)  # raises the job's error
        return JSONResponse(job.as_json())

    def close(self) -> None:
        self.jobs.close()


async def app_state(request: Request) -> AppState:
    """The app's state, typed; ``async``, so FastAPI does not hop to its thread pool and back."""
    state: AppState = request.app.state.cs
    return state


Service = Annotated[AppState, Depends(app_state)]
"""What every handler declares to receive the service: ``def page(state: Service, ...)``."""
