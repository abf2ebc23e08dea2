"""``create_app``: the FastAPI app of ``convscope serve`` (pages, API, static files, jobs).

Handlers call ``tasks/`` (and ``render/`` for pictures) only. Each page lives in its own module
with a ``router``; :data:`ROUTERS` lists them in the order their routes are matched.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..model import Model
from . import (
    atlas_pages,
    compare,
    errors,
    explainer,
    job_routes,
    lab,
    layer_pages,
    model_page,
    neighbors,
    patches_page,
)
from .config import ServeConfig
from .errors import Forbidden, TooLarge, error_response
from .pages import STATIC
from .state import AppState

ROUTERS = (job_routes, model_page, explainer, layer_pages, neighbors, patches_page, atlas_pages, compare, lab)
TOKEN_COOKIE = "convscope_token"
_BODY_SLACK = 64 * 1024
"""Room for multipart headers around an upload of the maximum size."""


def create_app(config: ServeConfig | None = None, *, models: list[tuple[str, Model]] | None = None
               ) -> FastAPI:
    """The app for ``config``; ``models`` are (spec, model) pairs already loaded (else the
    config's specs are loaded)."""
    config = config or ServeConfig()
    state = AppState(config, models)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(title="convscope", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.cs = state
    errors.install(app)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    for module in ROUTERS:
        app.include_router(module.router)

    app.add_middleware(Guard, config=config)
    return app


class Guard:
    """The token and size checks before every request, and the token cookie after the first.
    Plain ASGI rather than ``@app.middleware("http")``, whose wrapping of each response in a
    stream and a task cost about 0.3 ms a request (two of them per explanation)."""

    def __init__(self, app: ASGIApp, config: ServeConfig) -> None:
        self.app, self.config = app, config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            check_token(request, self.config)
            check_size(request, self.config)
        except (Forbidden, TooLarge) as err:
            await error_response(request, errors.status_of(err), str(err))(scope, receive, send)
            return
        token = self.config.token
        if not (token and request.query_params.get("token") == token):
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = Response()
                cookie.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                for key, value in cookie.raw_headers:
                    if key == b"set-cookie":
                        headers.append("set-cookie", value.decode("latin-1"))
                message = {**message, "headers": headers.raw}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def check_token(request: Request, config: ServeConfig) -> None:
    """With a token, every request carries it: ``?token=`` (then a cookie), the cookie, or an
    ``Authorization: Bearer`` header."""
    if not config.token:
        return
    given = (request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE)
             or request.headers.get("authorization", "").removeprefix("Bearer ").strip())
    if not given or not hmac.compare_digest(given, config.token):
        raise Forbidden("this server needs its access token; open the address it printed at start "
                        "(with ?token=...)")


def check_size(request: Request, config: ServeConfig) -> None:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > config.max_upload_bytes + _BODY_SLACK:
        raise TooLarge(f"the request is {int(length)} bytes; the upload limit is "
                       f"{config.max_upload_bytes} bytes")
