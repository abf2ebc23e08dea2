"""The running app's state: loaded models, folders, atlases, the job worker and the disk cache."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from fastapi import Request

from ..data.atlas import Atlas
from ..model import Model, load_model
from .cache import DiskCache
from .config import ServeConfig
from .errors import NotFound
from .images import folder_ids
from .jobs import JobManager


@dataclass
class ModelEntry:
    name: str
    spec: str
    model: Model

    @cached_property
    def key(self) -> str:
        """A content hash (spec, preprocessing, every parameter and buffer): cache entries of a
        model whose weights changed are never reused."""
        digest = hashlib.sha256(self.spec.encode())
        digest.update(repr(self.model.spec).encode())
        with torch.no_grad():
            for name, tensor in list(self.model.state_dict().items()):
                digest.update(name.encode())
                t = tensor.detach().cpu().contiguous().reshape(-1)  # 0-dim buffers cannot be viewed as bytes
                digest.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
                digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return digest.hexdigest()[:16]


@dataclass
class AtlasEntry:
    id: str
    path: Path

    @cached_property
    def atlas(self) -> Atlas:
        return Atlas.open(self.path)


def _model_name(spec: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(spec.split(":")[-1]).stem if "/" in spec or "\\" in spec
                  else spec.replace(":", "-")) or "model"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


class AppState:
    """Built once by :func:`convscope.web.app.create_app`; handlers read it as ``request.app.state.cs``."""

    def __init__(self, config: ServeConfig, models: list[tuple[str, Model]] | None = None) -> None:
        """``models``: (spec, model) pairs already loaded (the CLI loads them with its options);
        otherwise each spec of ``config.models`` is loaded with ``config.model_options``."""
        self.config = config
        self.cache = DiskCache(config.cache_dir)
        self.jobs = JobManager(self.cache)
        self.models: dict[str, ModelEntry] = {}
        if models:
            for spec, model in models:
                name = _model_name(spec, set(self.models))
                self.models[name] = ModelEntry(name, spec, model)
        else:
            auto = "cuda" if torch.cuda.is_available() else "cpu"
            device = auto if config.device == "auto" else config.device
            for spec in config.models:
                name = _model_name(spec, set(self.models))
                model = load_model(spec, device=device, **config.model_options)  # type: ignore[arg-type]
                self.models[name] = ModelEntry(name, spec, model)
        self.image_folders = folder_ids(config.images)
        self.atlases: dict[str, AtlasEntry] = {
            atlas_id: AtlasEntry(atlas_id, path) for atlas_id, path in folder_ids(config.atlases).items()}

    @property
    def default_model(self) -> ModelEntry:
        return next(iter(self.models.values()))

    def model(self, name: str | None = None) -> ModelEntry:
        """The named model (the first one for ``None`` or empty); unknown names are a 404."""
        if not name:
            return self.default_model
        entry = self.models.get(name)
        if entry is None:
            raise NotFound(f"model {name!r} is not served; models: {', '.join(self.models)}")
        return entry

    def atlas(self, atlas_id: str) -> AtlasEntry:
        entry = self.atlases.get(atlas_id)
        if entry is None:
            raise NotFound(f"no atlas {atlas_id!r}; atlases: "
                           f"{', '.join(self.atlases) or 'none (start with --atlas DIR)'}")
        return entry

    def close(self) -> None:
        self.jobs.close()


def app_state(request: Request) -> AppState:
    """The app's state, typed (every handler's way to it)."""
    state: AppState = request.app.state.cs
    return state
