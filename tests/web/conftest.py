"""Fixtures for the web app: an app on small real models, an HTTP client, a live server, a browser.

Models load once per session and are shared (the app never changes them: the contract tests
prove it). ``make_app`` builds an app with any config (folders, atlases, limits); ``app`` is the
usual one: digits_cnn first (the default model of every page), then the embedded
EfficientNet-Lite0, an ``--images`` folder with two small PNGs. The digit atlases are scanned once
per session, and each kind of ``app`` (with its ``client`` and ``live_server``) is built once per
session too: each module that uses one starts with its disk cache empty (the module's tests
share it, as they shared a module's app), and each test with no job of another still running.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import convscope
from convscope.model import Model
from convscope.web.app import create_app
from convscope.web.config import ServeConfig
from convscope.web.server import start_in_thread
from tests.web.digits_atlases import DigitAtlases, make_digit_atlases

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--enable-unsafe-swiftshader"]


@pytest.fixture(scope="session")
def web_models() -> dict[str, Model]:
    return {"digits_cnn": convscope.load_model("digits_cnn"),
            "efficientnet_lite0": convscope.load_model("efficientnet_lite0")}


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / "noise.png")
    (folder / "sub").mkdir()
    Image.fromarray(np.full((32, 32), 200, dtype=np.uint8)).save(folder / "sub" / "gray.png")
    return folder


@pytest.fixture(scope="session")
def make_app(web_models: dict[str, Model], image_folder: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """``make_app(models=("digits_cnn",), **config)`` -> a FastAPI app (closed at session end)."""
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


@dataclass
class Shared:
    """One app of the session with its test client and, once asked for, its live server."""

    app: Any
    client: Any
    url: str | None = None


class SharedApps:
    """The session's apps, one per kind (the usual one, or a module's ``SERVE_DIGITS`` models with
    the digit atlases). Their clients and servers run the app's lifespan, whose end closes the
    app: all of them end with the session."""

    def __init__(self, make_app: Callable[..., Any], stack: ExitStack) -> None:
        self.make_app, self.stack = make_app, stack
        self.apps: dict[tuple[str, ...] | None, Shared] = {}

    def get(self, models: tuple[str, ...] | None, **config: Any) -> Shared:
        from fastapi.testclient import TestClient

        if models not in self.apps:
            app = self.make_app(**config) if models is None else self.make_app(models=models, **config)
            client = self.stack.enter_context(TestClient(app, base_url="http://127.0.0.1"))
            self.apps[models] = Shared(app, client)
        return self.apps[models]

    def url(self, shared: Shared) -> str:
        if shared.url is None:
            running = start_in_thread(shared.app)
            self.stack.callback(running.stop)
            shared.url = running.url.rstrip("/")
        return shared.url


def end_jobs(app: Any) -> None:
    """Cancel the app's unfinished jobs and wait for them to end."""
    for job in app.state.cs.jobs.list():
        if not job.finished_:
            app.state.cs.jobs.cancel(job.id)
            assert job.wait(30), f"job {job.id} did not end after its cancel"


@pytest.fixture(scope="session")
def shared_apps(make_app: Callable[..., Any]) -> Iterator[SharedApps]:
    with ExitStack() as stack:
        yield SharedApps(make_app, stack)


@pytest.fixture(scope="module")
def shared(request: pytest.FixtureRequest, shared_apps: SharedApps) -> Shared:
    """The module's kind of app: the usual one; a module with ``SERVE_DIGITS = (model names)``
    gets those models and the digit atlases (and their query folder) instead."""
    models = getattr(request.module, "SERVE_DIGITS", None)
    found = shared_apps.get(None) if models is None else shared_apps.get(
        tuple(models), **request.getfixturevalue("digits").config())
    end_jobs(found.app)
    shutil.rmtree(found.app.state.cs.cache.root / "results", ignore_errors=True)
    return found


@pytest.fixture
def app(shared: Shared) -> Any:
    end_jobs(shared.app)
    return shared.app


@pytest.fixture
def client(app: Any, shared: Shared) -> Any:
    return shared.client


@pytest.fixture
def live_server(app: Any, shared: Shared, shared_apps: SharedApps) -> str:
    """The module's app on 127.0.0.1 and a free port: the base URL (no trailing slash)."""
    return shared_apps.url(shared)


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
