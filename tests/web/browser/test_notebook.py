"""Notebook output in Chromium: what a front end does with ``_repr_html_`` is put the HTML into
its page. The app's iframe shows the live app, and a report's ``srcdoc`` frame draws its pictures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch

from convscope import report
from convscope.model import Model
from convscope.web.notebook import show_app


@contextmanager
def notebook_server(html: str) -> Iterator[str]:
    """A stand-in for a notebook server on localhost that serves one page: ``html``."""
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/notebooks/demo.ipynb"
    finally:
        server.shutdown()
        server.server_close()


def test_the_app_iframe_shows_the_live_app(web_models: dict[str, Model], tmp_path: Path, page: Any) -> None:
    with show_app(web_models["digits_cnn"], cache_dir=tmp_path, height=500) as app:
        # the output in a page of a notebook server on this machine, another origin than the
        # app's: its frame-ancestors policy admits local notebook front ends
        output = f"<html><body><div class='output'>{app._repr_html_()}</div></body></html>"
        with notebook_server(output) as notebook:
            page.goto(notebook)
            frame = page.frame_locator("iframe")
            assert frame.locator("h1").inner_text() == "digits_cnn"
            frame.locator("#layer-search").fill("block3")
            frame.locator("#layer-count").filter(has_text="4 of 21 layers").wait_for()
            assert page.eval_on_selector("iframe", "f => f.clientHeight") == 500


def test_a_report_draws_its_pictures_inside_its_frame(web_models: dict[str, Model], page: Any) -> None:
    model = web_models["digits_cnn"]
    images = list(torch.rand(1, 3, 28, 28, generator=torch.Generator().manual_seed(0)))
    result = report(model, images, "gradcam,saliency", faithfulness_steps=0)
    page.set_content(f"<html><body>{result._repr_html_()}</body></html>")
    frame = page.frame_locator("iframe")
    frame.locator(".card img").first.wait_for()
    pictures = frame.locator("img")
    assert pictures.count() >= 5  # two colour keys, the image, two maps
    drawn = pictures.evaluate_all("els => els.every(e => e.complete && e.naturalWidth > 0)")
    assert drawn
    # the report's stylesheet stays in its frame: the notebook page keeps its own margins
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgba(0, 0, 0, 0)"
