"""Fixtures for the web app: an app on small real models, an HTTP client, a live server, a browser.

Models load once per session and are shared (the app never changes them: the contract tests
prove it). ``make_app`` builds an app with any config (folders, atlases, limits); ``client`` is
the usual one: digits_cnn first (the default model of every page), then the embedded
EfficientNet-Lite0, an ``--images`` folder with two small PNGs, a fresh cache per module. The digit
atlases are scanned once per session.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import convscope
from convscope.model import Model
from convscope.web.app import create_app
from convscope.web.config import ServeConfig
from convscope.web.server import RunningServer, start_in_thread
from tests.web.digits_atlases import DigitAtlases, make_digit_atlases

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--enable-unsafe-swiftshader"]


@pytest.fixture(scope="session")
def web_models() -> dict[str, Model]:
    return {"digits_cnn": convscope.load_model("digits_cnn"),
            "efficientnet_lite0": convscope.load_model("efficientnet_lite0")}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / "noise.png")
    (folder / "sub").mkdir()
    Image.fromarray(np.full((32, 32), 200, dtype=np.uint8)).save(folder / "sub" / "gray.png")
    return folder


@pytest.fixture(scope="module")
def make_app(web_models: dict[str, Model], image_folder: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """``make_app(models=("digits_cnn",), **config)`` -> a FastAPI app (closed at module end)."""
    apps: list[Any] = []

    def make(models: tuple[str, ...] = ("digits_cnn", "efficientnet_lite0"), **config: Any) -> Any:
        config.setdefault("images", [image_folder])
        config.setdefault("cache_dir", tmp_path_factory.mktemp("cache"))
        app = create_app(ServeConfig(models=list(models), **config),
                         models=[(name, web_models[name]) for name in models])
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.cs.close()


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitAtlases:
    """The three digit atlases, scanned once per session (serving only reads them)."""
    return make_digit_atlases(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def app(request: pytest.FixtureRequest, make_app: Callable[..., Any]) -> Any:
    """The usual app; a module with ``SERVE_DIGITS = (model names)`` gets those models and the
    digit atlases (and their query folder) instead."""
    models = getattr(request.module, "SERVE_DIGITS", None)
    if models is None:
        return make_app()
    return make_app(models=models, **request.getfixturevalue("digits").config())


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture(scope="module")
def live_server(app: Any) -> Iterator[str]:
    """The module's app on 127.0.0.1 and a free port; yields the base URL (no trailing slash)."""
    running: RunningServer = start_in_thread(app)
    yield running.url.rstrip("/")
    running.stop()


def chromium_path() -> str:
    path = os.environ.get("CONVSCOPE_CHROMIUM") or CHROMIUM
    if not Path(path).exists() and not shutil.which(path):
        pytest.fail(f"the browser tests need Debian's chromium at {path} (apt-get install -y chromium); "
                    "the README's test command installs it when run as root", pytrace=False)
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (1280x900); console errors are collected in ``page.console_errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.console_errors = errors
    yield pg
    context.close()
