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

NAV = [("/", "Model"), ("/explain", "Explain"), ("/lab", "Lab"), ("/leaderboard", "Leaderboard"),
       ("/atlas", "Atlases"), ("/compare", "Compare models"), ("/compare/atlas", "Compare atlases"),
       ("/jobs", "Jobs")]


def nav_section(path: str) -> str:
    """The navigation entry a page belongs to: the longest one its path starts with (layer and
    unit pages belong to the model page)."""
    inside = [href for href, _ in NAV if href != "/" and (path == href or path.startswith(href + "/"))]
    return max(inside, key=len, default="/")


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
    section = nav_section(request.url.path)
    html = environment().get_template(template).render(
        request=request, cs=state, section=section, embed=request.query_params.get("embed") == "1",
        **context)
    return HTMLResponse(html, status_code=status_code)
