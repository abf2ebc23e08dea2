"""``create_app``: the FastAPI app of ``convscope serve`` (docs/architecture.md, section 6), and
the checks before every request. :data:`ROUTERS` lists the pages in the order their routes match.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConvscopeError
from ..model import Model
from . import (
    atlas_pages,
    compare,
    errors,
    explainer,
    job_routes,
    lab,
    layer_pages,
    leaderboard_page,
    model_page,
    neighbors,
    patches_page,
)
from .config import SELF_ONLY, ServeConfig
from .errors import Forbidden, MisdirectedRequest, TooLarge, error_response
from .pages import STATIC
from .state import AppState

ROUTERS = (job_routes, model_page, explainer, layer_pages, neighbors, patches_page, atlas_pages, compare, lab,
           leaderboard_page)
TOKEN_COOKIE = "convscope_token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_BODY_SLACK = 64 * 1024
"""Room for multipart headers around an upload of the maximum size."""


def create_app(config: ServeConfig | None = None, *,
               models: Sequence[tuple[str, Model | None]] | None = None) -> FastAPI:
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
    """The checks before every request (Host, Origin, token, size) and the headers after it
    (frame and content policy, the token cookie after the first visit). Plain ASGI rather than
    ``@app.middleware("http")``, whose wrapping of each response in a stream and a task cost
    about 0.3 ms a request (two of them per explanation)."""

    def __init__(self, app: ASGIApp, config: ServeConfig) -> None:
        self.app, self.config = app, config
        framers = " ".join(config.frame_ancestors)
        self.headers = [("content-security-policy", f"frame-ancestors {framers}"),
                        ("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer")]
        if config.frame_ancestors == SELF_ONLY:  # X-Frame-Options cannot name several origins
            self.headers.append(("x-frame-options", "SAMEORIGIN"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            check_host(request, self.config)
            check_origin(request)
            check_token(request, self.config)
            check_size(request, self.config)
        except ConvscopeError as err:
            await error_response(request, errors.status_of(err), str(err))(scope, receive, send)
            return
        token = self.config.token
        cookie = token if token and request.query_params.get("token") == token else None

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                for key, value in self.headers:
                    headers.setdefault(key, value)
                if cookie is not None:
                    setter = Response()
                    setter.set_cookie(TOKEN_COOKIE, cookie, httponly=True, samesite="strict")
                    headers.append("set-cookie", setter.headers["set-cookie"])
                message = {**message, "headers": headers.raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _host_name(netloc: str) -> str:
    """``[::1]:8000`` -> ``::1``, ``Example.org:80`` -> ``example.org``."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def check_host(request: Request, config: ServeConfig) -> None:
    """The ``Host`` header names an address the server was started on: a page of another site
    whose name was pointed at 127.0.0.1 (DNS rebinding) is refused."""
    allowed = config.allowed_hosts
    host = request.headers.get("host", "")
    if allowed is not None and _host_name(host) not in allowed:
        raise MisdirectedRequest(f"host {host[:100]!r} is not this server's address; open "
                                 f"{config.url} (this server answers {', '.join(sorted(allowed))})")


def check_origin(request: Request) -> None:
    """A request that changes state (POST and the like: uploads, jobs, cancels) from a browser
    comes from this server's own pages: another ``Origin`` is refused (requests without one do
    not come from a page of another site)."""
    origin = request.headers.get("origin")
    if request.method in SAFE_METHODS or origin is None:
        return
    given = urlsplit(origin).netloc if origin != "null" else "null"
    if given.lower() != request.headers.get("host", "").lower():
        raise Forbidden(f"a {request.method} from origin {origin[:100]!r} is refused: only this "
                        "server's own pages may change its state")


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
