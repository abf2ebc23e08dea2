"""Server-rendered pages: one Jinja2 environment over ``web/templates`` and the shared context."""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape


TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")

NAV = [("/", "Model"), ("/explain", "Explain"), ("/lab", "Lab"), ("/atlas", "Atlases"), ("/jobs", "Jobs")]


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    try:
        env.globals["version"] = metadata.version("convscope")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        env.globals["version"] = "dev"
    env.globals["nav"] = NAV
    return env


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """``template`` (extending ``base.html``) with ``request``, the app state (``cs``) and ``context``."""
    state = getattr(request.app.state, "cs", None)
    section = "/" + request.url.path.strip("/").split("/")[0] if request.url.path != "/" else "/"
    section = {"/layers": "/"}.get(section, section)
    html = environment().get_template(template).render(
        request=request, cs=state, section=section, embed=request.query_params.get("embed") == "1",
        **context)
    return HTMLResponse(html, status_code=status_code)
