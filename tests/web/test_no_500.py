"""No request, however wrong, gets a 500 or a traceback: every route of the app is called with bad
path values, bad query values and bad bodies, and must answer with a status below 500 and, for
errors, one line."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from convscope.web.app import ROUTERS

BAD_SEGMENTS = ["..", "%2e%2e", "x" * 300, "-1", "99999999", "nope", "%00", "a:b", "0.5", "%2Fetc%2Fpasswd"]
BAD_QUERY = {"image": "../../etc/passwd", "model": "nope", "k": "-3", "index": "-1", "method": "mds",
             "channel": "x", "steps": "0", "size": "-5", "seed": "x", "metric": "manhattan", "q": "%",
             "page": "-1", "sort": "sideways", "target": "no-such-class", "layer": "nope"}


def routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route of every page module the app includes."""
    found = []
    for module in ROUTERS:
        for route in module.router.routes:
            if isinstance(route, APIRoute):
                found += [(method, route.path) for method in sorted(route.methods - {"HEAD"})]
    return found


GOOD = {"name": "block2", "channel": "1", "kind": "adversarial", "method": "pca", "layer": "block2",
        "index": "0", "tile": "0", "true": "0", "predicted": "0"}
"""Path values that exist (in the default app of tests/web/conftest.py), so that the bad query
values reach the checks behind the path's."""


def fill(path: str, value: str | None) -> str:
    """``path`` with every parameter set to ``value`` (``None``: a value that exists)."""
    return re.sub(r"\{([^}]+)\}", lambda m: value if value is not None else GOOD.get(m.group(1), "0"), path)


def check(answer: Any, where: str) -> None:
    assert answer.status_code < 500, f"{where}: {answer.status_code} {answer.text[:300]}"
    assert "Traceback" not in answer.text, where
    if answer.status_code >= 400 and "json" in answer.headers.get("content-type", ""):
        message = answer.json().get("error", "")
        assert message and "\n" not in message, where


def test_every_page_of_the_design_is_served(app: Any) -> None:
    paths = {re.sub(r"\{[^}]+\}", "{}", p) for _, p in routes(app)}
    for page in ("/", "/explain", "/layers/{}", "/layers/{}/{}", "/atlas", "/atlas/{}/{}", "/lab", "/jobs",
                 "/compare", "/compare/atlas", "/atlas/{}/{}/patches"):
        assert page in paths, page


@pytest.mark.parametrize("segment", BAD_SEGMENTS)
def test_bad_path_values_never_give_a_500(app: Any, client: TestClient, segment: str) -> None:
    for method, path in routes(app):
        if "{" not in path:
            continue
        url = fill(path, segment)
        answer = client.request(method, url, headers={"accept": "text/html"},
                                json={} if method == "POST" else None)
        check(answer, f"{method} {url}")


def test_bad_query_values_never_give_a_500(app: Any, client: TestClient) -> None:
    for method, path in routes(app):
        url = fill(path, None)
        answer = client.request(method, url, params=BAD_QUERY, json={} if method == "POST" else None)
        check(answer, f"{method} {url}?bad")


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'{"image": 5, "method": []}', b"{" * 2000])
def test_bad_bodies_never_give_a_500(app: Any, client: TestClient, body: bytes) -> None:
    for method, path in routes(app):
        if method != "POST":
            continue
        url = fill(path, None)
        answer = client.post(url, content=body, headers={"content-type": "application/json"})
        check(answer, f"POST {url} {body[:20]!r}")
