"""The leaderboard page (``/leaderboard``): the settings of ``convscope leaderboard`` run as a
cached job, like the lab's. Its checkpoint lives in the disk cache, so a cancelled job continues
where it stopped when the same settings run again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from ..data.datasets import MNIST5K
from ..errors import BadArgument
from ..methods.evaluation.metrics import metric_names
from ..methods.registry import method_names
from ..model.targets import parse_target
from ..render import png_bytes
from ..tasks.leaderboard import choose, leaderboard
from ..tasks.leaderboard_inputs import SAMPLES
from ..types import ProgressFn
from .cache import JobResult
from .images import inside
from .pages import render
from .params import FORM_KEYS, Field, parse_settings
from .state import AppState, Service

router = APIRouter()
FIELDS = (
    Field("dataset", "text", None, f"{MNIST5K}, {SAMPLES}, or folder:ID (a served --images folder; "
          "subfolders are classes)", required=True),
    Field("methods", "text", "saliency,gradcam,integrated_gradients", "comma-separated methods or all",
          required=True),
    Field("metrics", "text", None, "metrics or groups, comma-separated (empty: faithfulness)"),
    Field("regions", "text", None, "a CSV of boxes or masks per image (image,top,left,bottom,right or "
          "image,mask), its path inside the served folder: localization metrics need it"),
    Field("target", "text", "label", "label (the dataset's class), top1, a class index or a label"),
    Field("images", "int", 50, "images spread over the dataset", low=1, high=100_000),
    Field("steps", "int", 20, "deletion/insertion steps", low=1, high=1000),
    Field("batch_size", "int", 16, "images per batch", low=1, high=512),
    Field("seed", "int", 0, "bootstrap seed", low=0, high=2**31 - 1),
)


def dataset_of(state: AppState, text: str) -> Any:
    """``mnist5k``, ``samples`` or ``folder:ID`` -> what the task opens (no other path is read)."""
    if text in (MNIST5K, SAMPLES):
        return text
    kind, _, folder = text.partition(":")
    path = state.image_folders.get(folder) if kind == "folder" else None
    if path is None:
        served = ", ".join(f"folder:{f}" for f in state.image_folders) or "none (start with --images DIR)"
        raise BadArgument(f"dataset={text!r}: choose {MNIST5K}, {SAMPLES} or a served folder ({served})")
    return path


def regions_of(dataset: Any, text: str | None) -> Path | None:
    """The regions CSV named inside a served folder dataset (no other path is read), or None."""
    if not text:
        return None
    if not isinstance(dataset, Path):
        raise BadArgument(f"regions={text!r}: boxes and masks are read from a served folder; choose "
                          "dataset folder:ID and name a CSV inside it")
    file = inside(dataset, text, "regions")
    if not file.is_file():
        raise BadArgument(f"regions={text!r}: no such file in the served folder; give the CSV's path "
                          "inside it")
    return file


@router.post("/api/leaderboard")
def leaderboard_run(state: Service, body: dict[str, Any] = Body(default_factory=dict)  # noqa: B008
                    ) -> Response:
    """Start a job: JSON ``{setting: value, ..., "model": NAME, "wait": bool}`` -> the job JSON; the
    settings are checked (a 4xx) before anything runs."""
    entry = state.model(body.get("model"))
    s = parse_settings(FIELDS, body, FORM_KEYS, "leaderboard")
    dataset = dataset_of(state, s["dataset"])
    regions = regions_of(dataset, s["regions"])
    methods, metrics = choose(entry.model, s["methods"], s["metrics"] or None, regions=regions is not None)
    target = parse_target(s["target"])
    digest = hashlib.sha256(regions.read_bytes()).hexdigest() if regions is not None else None
    key = state.cache.key("leaderboard", entry.key, s, *([digest] if digest else []))  # the CSV's content
    checkpoint = state.cache.root / "leaderboard" / f"{key}.json"

    def run(progress: ProgressFn) -> JobResult:
        board = leaderboard(entry.model, dataset, methods, metrics, target=target, images=s["images"],
                            steps=s["steps"], batch_size=s["batch_size"], seed=s["seed"],
                            regions=regions, checkpoint=checkpoint, progress=progress)
        header, rows = board.table()
        data = {**board.summary(), "header": header, "table": rows, "meta": board.meta}
        return JobResult(data=data, files={"leaderboard.png": png_bytes(board.plot()),
                                           "leaderboard.csv": board.csv().encode(),
                                           "leaderboard.html": board.html().encode()})

    title = f"Leaderboard ({entry.name}): {s['dataset']}, {s['images']} images, {', '.join(methods)}"
    return state.answer(state.jobs.submit("leaderboard", title, run, key=key), bool(body.get("wait")))


@router.get("/leaderboard")
def leaderboard_page(request: Request, state: Service, model: str | None = None) -> Response:
    """The form filled from the URL (a bad setting is a 400 page) and the result area."""
    entry = state.model(model)
    parse_settings(FIELDS, request.query_params, FORM_KEYS, "leaderboard", partial=True)
    values = {f.name: request.query_params.get(f.name, f.shown_default) for f in FIELDS}
    datasets = [MNIST5K, SAMPLES, *(f"folder:{f}" for f in state.image_folders)]
    return render(request, "leaderboard.html", title="Leaderboard", fields=FIELDS, values=values,
                  model=entry.name, models=list(state.models), datasets=datasets,
                  methods=method_names(), metrics=metric_names(),
                  autorun=request.query_params.get("run") == "1")

