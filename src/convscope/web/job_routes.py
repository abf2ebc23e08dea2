"""Core routes: the jobs page, job status, its progress stream, cancel, result files, image list."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from ..errors import BadArgument
from ..render import png_bytes
from .cache import JobResult, check_file_name
from .errors import NotFound
from .images import list_images, save_upload
from .jobs import FINISHED
from .pages import STATIC, render
from .state import Service

router = APIRouter()
NO_CACHE = {"Cache-Control": "no-cache"}
HOUR_CACHE = {"Cache-Control": "max-age=3600"}
POLL_SECONDS = 0.05
KEEPALIVE_SECONDS = 15.0
READ_WHOLE_BYTES = 4 * 2**20
"""Result files up to this size are answered from one read (a 200 KB map in 1 ms less)."""
_MEDIA = {".png": "image/png", ".json": "application/json", ".csv": "text/csv", ".html": "text/html"}


@router.get("/jobs")
def jobs_page(request: Request, state: Service) -> Response:
    return render(request, "jobs.html", title="Jobs", jobs=list_jobs(state)["jobs"])


@router.get("/api/jobs")
def list_jobs(state: Service) -> dict[str, object]:
    return {"jobs": [j.as_json() for j in state.jobs.list()]}


@router.get("/api/jobs/{job_id}")
def job_status(state: Service, job_id: str) -> dict[str, object]:
    return state.jobs.get(job_id).as_json()


@router.post("/api/jobs/{job_id}/cancel")
def cancel_job(state: Service, job_id: str) -> dict[str, object]:
    return state.jobs.cancel(job_id).as_json()


MAX_WATCHED = 200
"""Jobs one event stream may follow (a page's explainer with every method ticked follows 16)."""


@router.get("/api/events")
async def jobs_events(request: Request, state: Service, jobs: str) -> StreamingResponse:
    """Server-sent events for the jobs a page follows (``jobs=ID,ID,...``, one connection for
    all: docs/architecture.md, section 6): a JSON message per change, ended when all have finished."""
    ids = list(dict.fromkeys(i for i in jobs.split(",") if i))
    if not ids or len(ids) > MAX_WATCHED:
        raise BadArgument(f"jobs={jobs[:40]!r}: give 1 to {MAX_WATCHED} job ids separated by commas")
    followed = [state.jobs.get(i) for i in ids]

    async def stream() -> AsyncIterator[str]:
        seen = {job.id: -1 for job in followed}
        open_, quiet = list(followed), 0.0
        while open_:
            for job in list(open_):
                if job.version == seen[job.id]:
                    continue
                quiet = 0.0
                with job.changed:  # one consistent state (update() sets its fields under this lock)
                    seen[job.id], snapshot = job.version, job.as_json()
                # the finish test reads the snapshot, not the job, which may finish while this
                # message is on its way: its last message would be lost
                yield f"data: {json.dumps(snapshot)}\n\n"
                if snapshot["status"] in FINISHED:
                    open_.remove(job)
            if not open_ or await request.is_disconnected():
                return
            await asyncio.sleep(POLL_SECONDS)
            quiet += POLL_SECONDS
            if quiet >= KEEPALIVE_SECONDS:
                quiet = 0.0
                yield ": keepalive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def file_response(name: str, blob: bytes | None = None, path: Path | None = None) -> Response:
    media = _MEDIA.get(Path(name).suffix, "application/octet-stream")
    headers = {"Cache-Control": "max-age=31536000, immutable"} if path is not None else {}
    if path is not None:
        if path.stat().st_size > READ_WHOLE_BYTES:  # streamed in chunks, off the event loop
            return FileResponse(str(path), media_type=media, headers=headers)
        blob = path.read_bytes()  # a map or a picture: one read beats FileResponse's thread hops
    return Response(blob or b"", media_type=media, headers=headers)


def png_response(picture: Any, headers: dict[str, str] | None = None) -> Response:
    """A picture (PIL or tensor) as a PNG answer, not cached by default."""
    return Response(png_bytes(picture), media_type="image/png", headers=headers or NO_CACHE)


@router.get("/api/jobs/{job_id}/files/{name}")
def job_file(state: Service, job_id: str, name: str) -> Response:
    job = state.jobs.get(job_id)
    check_file_name(name)
    if job.key:
        return file_response(name, path=state.cache.file(job.key, name))
    result = job.result
    if not isinstance(result, JobResult) or name not in result.files:
        raise NotFound(f"job {job_id} has no file {name!r} (yet)")
    return file_response(name, result.files[name])


@router.get("/api/results/{key}/{name}")
def cached_file(state: Service, key: str, name: str) -> Response:
    """A cached result's file by its key: a stable address that survives restarts."""
    return file_response(name, path=state.cache.file(key, name))


@router.get("/api/images")
def images(state: Service) -> dict[str, object]:
    return {"images": [c.__dict__ for c in list_images(state)]}


@router.get("/api/images/check")
def check_image(state: Service, image: str) -> dict[str, object]:
    """Whether ``image`` names a readable image (and its size): pages check a reference first."""
    tensor = state.image(image)
    return {"image": image, "height": int(tensor.shape[-2]), "width": int(tensor.shape[-1])}


@router.post("/api/upload")
def upload(state: Service, file: UploadFile) -> JSONResponse:
    """Store an uploaded image; answer its reference and the file's name (which pages show). A
    plain ``def``, run in FastAPI's thread pool: ``async`` would decode on the event loop."""
    data = file.file.read(state.config.max_upload_bytes + 1)
    name = file.filename or "upload"
    return JSONResponse({"image": save_upload(state, data, name), "name": name})


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    return FileResponse(str(STATIC / "favicon.svg"), media_type="image/svg+xml")


@router.get("/healthz")
def health() -> dict[str, str]:
    return {"status": "ok"}
