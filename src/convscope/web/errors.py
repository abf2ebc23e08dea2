"""Every bad request becomes a 4xx with one line that says what to fix, never a 500 or a traceback:
handlers raise :class:`~convscope.errors.ConvscopeError` subclasses, :func:`install` maps them to a
status; ``/api/`` routes answer JSON ``{"error": ...}``, pages the error page.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BadLayer, ConvscopeError

log = logging.getLogger("convscope.web")


class NotFound(ConvscopeError):
    """A page, atlas, layer, channel, job or file that does not exist."""


class TooLarge(ConvscopeError):
    """An upload or request over the configured limit."""


class Forbidden(ConvscopeError):
    """A request without the access token, or for a path outside the served folders."""


class MisdirectedRequest(ConvscopeError):
    """A request whose ``Host`` is not an address the server was started on (DNS rebinding)."""


_STATUS: tuple[tuple[type[ConvscopeError] | tuple[type[ConvscopeError], ...], int], ...] = (
    (MisdirectedRequest, 421), ((NotFound, BadLayer), 404), (TooLarge, 413), (Forbidden, 403))


def status_of(err: ConvscopeError) -> int:
    """The status of an error; 400 for BadArgument, BadImage, BadModel, BadTarget: any other bad input."""
    return next((status for kinds, status in _STATUS if isinstance(err, kinds)), 400)


def one_line(message: str) -> str:
    return " ".join(str(message).split()) or "bad request"


def error_response(request: Request, status: int, message: str) -> Response:
    message = one_line(message)
    wants_json = request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", "")
    if wants_json:
        return JSONResponse({"error": message, "status": status}, status_code=status)
    from .pages import render  # pages imports this module

    return render(request, "error.html", status_code=status, status=status, message=message,
                  title=f"Error {status}")


def install(app: FastAPI) -> None:
    @app.exception_handler(ConvscopeError)
    async def _convscope(request: Request, err: ConvscopeError) -> Response:
        return error_response(request, status_of(err), str(err))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError) -> Response:
        parts = []
        for e in err.errors()[:3]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
            parts.append(f"{where or 'request'}: {e.get('msg', 'invalid')}")
        return error_response(request, 422 if request.url.path.startswith("/api/") else 400,
                              "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> Response:
        message = err.detail if isinstance(err.detail, str) else "bad request"
        if err.status_code == 404 and message == "Not Found":
            message = f"no page {request.url.path!r}; start at /"
        if err.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(request, err.status_code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(request, 500, f"internal error ({type(err).__name__}); "
                                            "run with --debug and report it")
