"""``convscope.show_app``: the app in a background thread, shown in a notebook as an iframe."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

import convscope
from convscope.errors import BadArgument
from convscope.model import Model
from convscope.web.notebook import NotebookApp, show_app


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port (a listener of our own can be bound there)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
        except OSError:
            return False
    return True


def test_the_app_starts_answers_shows_an_iframe_and_stops(web_models: dict[str, Model],
                                                          tmp_path: Path) -> None:
    app = show_app(web_models["digits_cnn"], cache_dir=tmp_path, height=480)
    port = int(re.match(r"http://127\.0\.0\.1:(\d+)/$", app.url).group(1))  # type: ignore[union-attr]
    try:
        page = httpx.get(app.url, headers={"accept": "text/html"}, timeout=30)
        assert page.status_code == 200 and "<h1>digits_cnn</h1>" in page.text
        assert httpx.get(app.url + "static/model.js", timeout=30).status_code == 200
        html = app._repr_html_()
        frame = re.search(r'<iframe src="([^"]+)"[^>]*height="480"', html)
        assert frame is not None and unescape(frame.group(1)) == app.url
        assert "<script" not in html  # plain HTML: no widget, no nbextension
        assert not port_is_free(port) and "running" in repr(app)
    finally:
        app.stop()
    assert port_is_free(port) and "stopped" in repr(app)
    with pytest.raises(httpx.ConnectError):
        httpx.get(app.url, timeout=5)
    assert "<iframe" not in app._repr_html_()
    app.stop()  # a second stop does nothing


def test_several_models_a_start_page_and_a_with_block(web_models: dict[str, Model], tmp_path: Path) -> None:
    models = [web_models["digits_cnn"], web_models["efficientnet_lite0"]]
    with show_app(models, cache_dir=tmp_path, page="/?model=efficientnet_lite0&q=_blocks.1") as app:
        assert isinstance(app, NotebookApp) and app.url.endswith("/?model=efficientnet_lite0&q=_blocks.1")
        page = httpx.get(app.url, headers={"accept": "text/html"}, timeout=30).text
        assert "<h1>efficientnet_lite0</h1>" in page and 'value="_blocks.1"' in page
        assert httpx.get(app.url.split("?")[0] + "api/model/layers",
                         params={"model": "digits_cnn"}, timeout=30).status_code == 200
    assert not app.running


def test_a_spec_is_loaded_by_the_app(tmp_path: Path) -> None:
    with show_app("digits_cnn", cache_dir=tmp_path) as app:
        layers = httpx.get(app.url + "api/model/layers", timeout=30).json()
    assert layers[-1]["name"] == "fc" and layers[-1]["output_shape"] == [10]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"height": 10}, "height=10: give the frame at least 100 pixels"),
    ({"page": "explain"}, "page='explain': give a path of the app"),
    ({"model": []}, "model=\\[\\]: give a model"),
    ({"images": "no/such/folder"}, "--images 'no/such/folder' is not a folder"),
])
def test_bad_arguments_are_one_line_errors(kwargs: dict[str, Any], message: str, tmp_path: Path) -> None:
    kwargs.setdefault("model", "digits_cnn")
    with pytest.raises(BadArgument, match=message):
        show_app(cache_dir=tmp_path, **kwargs)


def test_convscope_exports_show_app_without_importing_fastapi_at_import() -> None:
    assert convscope.show_app is show_app and "show_app" in convscope.__all__ and "show_app" in dir(convscope)
    code = "import sys, convscope; assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        convscope.nothing  # noqa: B018
