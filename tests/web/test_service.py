"""The web layer as one service: weights that change, bounded inputs, Host and Origin checks,
one job-waiting policy, uploads off the event loop, and concurrent uploads and cancels.

Every test here failed before the web layer became one service object (issue 24).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from torch import nn

import convscope
from convscope.errors import BadArgument
from convscope.tasks.scan import scan_dataset
from convscope.types import ProgressFn
from convscope.web import images as web_images
from convscope.web import lab
from convscope.web.app import ROUTERS, create_app
from convscope.web.cache import JobResult
from convscope.web.config import ServeConfig, default_cache_dir
from convscope.web.params import BYTES_PER_PIXEL

WAIT_S = 30.0


def png(side: int, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def job_count(client: TestClient) -> int:
    return len(client.get("/api/jobs").json()["jobs"])


# -- the model's cache key follows its weights -------------------------------------------------

def test_weights_changed_after_the_app_started_give_new_maps(tmp_path: Path) -> None:
    model = convscope.load_model("digits_cnn")  # our own copy: the test changes its weights
    served = create_app(ServeConfig(models=["digits_cnn"], cache_dir=tmp_path),
                        models=[("digits_cnn", model)])
    try:
        with TestClient(served, base_url="http://127.0.0.1") as c:
            body = {"image": "sample:cat", "method": "saliency", "target": 3, "wait": True}
            first = c.post("/api/explain", json=body).json()
            with torch.no_grad():  # a notebook user goes on training
                for p in model.parameters():
                    p.mul_(1.5)
            second = c.post("/api/explain", json=body).json()
            assert first["status"] == second["status"] == "done"
            assert first["key"] != second["key"]
            a = np.load(io.BytesIO(c.get(first["files"]["map.npy"]).content))
            b = np.load(io.BytesIO(c.get(second["files"]["map.npy"]).content))
            assert not np.allclose(a, b)
    finally:
        served.state.cs.close()


# -- every value checked when the request arrives ---------------------------------------------

@pytest.mark.parametrize(("kind", "settings", "words"), [
    ("texture", {"image": "sample:brick", "size": "50000"}, "size"),
    ("adversarial", {"image": "sample:cat", "size": 100000}, "size"),
    ("adversarial", {"image": "sample:cat", "steps": "99999999999999999999"}, "steps"),
    ("adversarial", {"image": "sample:cat", "eps": "1e400"}, "eps"),
    ("adversarial", {"image": "sample:cat", "target": "9" * 5000}, "target"),
    ("fast_style", {"image": "sample:cat", "size": 2048, "batch": 64}, "memory"),
])
def test_huge_or_overflowing_lab_settings_are_a_400_before_anything_is_queued(
        client: TestClient, kind: str, settings: dict[str, Any], words: str) -> None:
    before = job_count(client)
    answer = client.post(f"/api/lab/{kind}", json=settings)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"] and "\n" not in answer.json()["error"]
    assert job_count(client) == before


@pytest.mark.parametrize(("method", "options", "target", "words"), [
    ("rise", {"masks": 10**12}, 3, "masks"),
    ("rise", {"masks": 100_000, "cells": 256}, 3, "masks=100000, cells=256"),  # 26 GB of grids
    ("occlusion", {"window": -5}, 3, "window"),
    ("integrated_gradients", {"steps": 10**9}, 3, "steps"),
    ("saliency", {}, "9" * 5000, "target"),
    ("smoothgrad", {"noise": "HUGE"}, 3, "noise"),
])
def test_huge_or_overflowing_explain_requests_are_a_400_before_anything_is_queued(
        client: TestClient, method: str, options: dict[str, Any], target: Any, words: str) -> None:
    before = job_count(client)
    body = json.dumps({"image": "sample:cat", "method": method, "options": options, "target": target})
    answer = client.post("/api/explain", content=body.replace('"HUGE"', "1e400"),  # JSON's own 1e400
                         headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]
    assert job_count(client) == before


BUDGET = 128 * 2**20
"""A small memory budget per job, so that jobs at its bound run in a second on digits_cnn."""
ROWS = BUDGET // (28 * 28 * BYTES_PER_PIXEL)
SIDE = math.isqrt(BUDGET // BYTES_PER_PIXEL)
"""The largest accepted batch of digits_cnn's 28x28 inputs, and the largest accepted lab image side."""


def resident(field: str) -> int:
    """This process's ``VmRSS`` (resident now) or ``VmHWM`` (its high-water mark), in bytes."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))


def test_jobs_at_the_memory_bound_are_accepted_and_stay_under_it(make_app: Callable[..., Any]) -> None:
    ig = {"image": "sample:cat", "method": "integrated_gradients", "target": 3}
    at_bound = (("/api/explain", {**ig, "options": {"steps": 2, "batch_size": 2}},
                 {**ig, "options": {"steps": ROWS, "batch_size": ROWS}}),
                ("/api/lab/adversarial", {"image": "sample:cat", "size": 28, "steps": 2},
                 {"image": "sample:cat", "size": SIDE, "steps": 2}))
    with TestClient(make_app(models=("digits_cnn",), max_job_bytes=BUDGET), base_url="http://127.0.0.1") as c:
        over_rows = c.post("/api/explain", json={**ig, "options": {"batch_size": ROWS + 1}}).json()
        over_side = c.post("/api/lab/adversarial", json={"image": "sample:cat", "size": SIDE + 1}).json()
        for refused, words in ((over_rows, f"batch_size={ROWS + 1}"), (over_side, f"size={SIDE + 1}")):
            assert words in refused["error"] and "limit per job" in refused["error"], refused
        for url, warm_up, bound in at_bound:
            assert c.post(url, json={**warm_up, "wait": True}).json()["status"] == "done"
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # the high-water mark starts again from the memory in use now
            before = resident("VmRSS")
            answer = c.post(url, json={**bound, "wait": True}).json()
            growth = resident("VmHWM") - before
            assert answer["status"] == "done" and growth <= BUDGET, (growth, answer)


def test_no_handler_module_holds_a_cache(client: TestClient) -> None:
    """Caches live in the app's state only: serving pages and API calls changes no module-level
    container of a page module, and none defines a memoizing function (``model_page`` kept its
    layer tables in a module global)."""
    def containers() -> dict[tuple[str, str], Any]:
        return {(module.__name__, name): copy.copy(value) for module in ROUTERS
                for name, value in vars(module).items() if isinstance(value, (dict, list, set))}

    before = containers()
    for url in ("/", "/explain", "/layers/block3", "/layers/block3/0", "/lab", "/jobs", "/compare",
                "/api/predict?image=sample:cat", "/api/layers/block3/featuremap/0.png"):
        assert client.get(url).status_code == 200, url
    body = {"image": "sample:cat", "method": "saliency", "target": 3, "wait": True}
    assert client.post("/api/explain", json=body).json()["status"] == "done"
    assert containers() == before
    assert not [(module.__name__, name) for module in ROUTERS for name, value in vars(module).items()
                if hasattr(value, "cache_info") and value.__module__ == module.__name__]


def test_layer_page_settings_that_overflow_are_a_400(client: TestClient) -> None:
    answer = client.get("/api/layers/block3/0/visualization", params={"steps": "9" * 30})
    assert answer.status_code == 400 and "steps" in answer.json()["error"]


# -- one job-waiting policy ---------------------------------------------------------------------

def test_a_failed_lab_job_with_wait_answers_4xx(client: TestClient, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise BadArgument("the texture cannot be made from this image")

    monkeypatch.setattr(lab, "texture", broken)
    answer = client.post("/api/lab/texture", json={"image": "sample:brick", "seed": 12345, "steps": 1,
                                                  "model": "efficientnet_lite0",
                                                  "wait": True})
    assert answer.status_code == 400
    assert answer.json()["error"] == "the texture cannot be made from this image"


def test_a_wait_that_times_out_answers_the_job_address(app: Any, client: TestClient,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from convscope.web import state as web_state

    monkeypatch.setattr(web_state, "WAIT_SECONDS", 0.05)
    release = threading.Event()

    def slow(progress: ProgressFn) -> JobResult:
        assert release.wait(WAIT_S)
        return JobResult({"ok": True})

    blocker = app.state.cs.jobs.submit("t", "blocker", slow)
    try:
        answer = client.post("/api/explain", json={"image": "sample:cat", "method": "saliency",
                                                   "target": 4, "wait": True})
        assert answer.status_code == 202
        job = answer.json()
        assert job["status"] == "queued" and answer.headers["location"] == f"/api/jobs/{job['id']}"
    finally:
        release.set()
        assert blocker.wait(WAIT_S)


# -- ATLAS:LAYER with a layer that carries a call suffix -----------------------------------------

class SharedRelu(nn.Module):
    """A model whose ``relu`` runs twice: its calls are the layers ``relu:0`` and ``relu:1``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.head(x.mean((2, 3)))


@pytest.fixture(scope="module")
def suffix_atlases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("suffix")
    for c in range(3):
        (root / "data" / str(c)).mkdir(parents=True)
        for i in range(3):
            Image.open(io.BytesIO(png(16, seed=10 * c + i))).save(root / "data" / str(c) / f"{i}.png")
    model = convscope.load_model(SharedRelu(), preprocess={"input_size": 16})
    return [scan_dataset(model, root / "data", root / name, layers=["relu:1"], k=2).path
            for name in ("one", "two")]


def test_an_atlas_layer_with_a_call_suffix_works_on_the_compare_page(
        make_app: Callable[..., Any], suffix_atlases: list[Path]) -> None:
    with TestClient(make_app(models=("digits_cnn",), atlases=suffix_atlases),
                    base_url="http://127.0.0.1") as c:
        page = c.get("/compare/atlas", params={"a": "one:relu:1", "b": "two:relu:1", "method": "pca"})
        assert page.status_code == 200, page.text
        assert "/atlas/two/relu%3A1?embed=1&amp;method=pca&amp;align_to=one%3Arelu%3A1" in page.text
        aligned = c.post("/api/atlas/two/relu:1/projection",
                         json={"method": "pca", "align_to": "one:relu:1", "wait": True})
        assert aligned.status_code == 200 and aligned.json()["status"] == "done", aligned.text


# -- Host, Origin and frame headers -------------------------------------------------------------

def test_a_foreign_host_header_is_refused(client: TestClient) -> None:
    rebound = client.get("/api/explain/image.png", params={"image": "sample:cat"},
                         headers={"host": "attacker.example:8000"})
    assert rebound.status_code == 421 or 400 <= rebound.status_code < 500
    assert "attacker.example" in rebound.json()["error"]
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"):
        assert client.get("/healthz", headers={"host": host}).status_code == 200


def test_a_cross_origin_upload_or_job_is_refused(client: TestClient) -> None:
    files = {"file": ("a.png", png(8), "image/png")}
    foreign = client.post("/api/upload", files=files, headers={"origin": "http://attacker.example"})
    assert foreign.status_code == 403 and "origin" in foreign.json()["error"]
    cancel = client.post("/api/jobs/nope/cancel", headers={"origin": "null"})
    assert cancel.status_code == 403
    same = client.post("/api/upload", files=files, headers={"origin": "http://127.0.0.1"})
    assert same.status_code == 200
    assert client.post("/api/upload", files=files).status_code == 200  # no Origin: not a browser


def test_frame_and_content_headers_are_sent(client: TestClient) -> None:
    page = client.get("/", headers={"accept": "text/html"})
    assert page.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_the_notebook_app_may_be_framed_by_a_local_notebook(web_models: dict[str, Any],
                                                            tmp_path: Path) -> None:
    with convscope.show_app(web_models["digits_cnn"], cache_dir=tmp_path) as shown:
        reply = httpx.get(shown.url, timeout=WAIT_S)
        policy = reply.headers["content-security-policy"]
        assert "http://localhost:*" in policy and "http://127.0.0.1:*" in policy
        assert "x-frame-options" not in reply.headers  # it cannot name several origins


def test_allow_remote_prints_an_address_that_can_be_opened() -> None:
    config = ServeConfig(host="0.0.0.0", port=8123).secure(allow_remote=True)
    assert "0.0.0.0" not in config.url and config.url.endswith(f":8123/?token={config.token}")


def test_a_missing_home_directory_falls_back_to_a_temporary_cache(monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory")

    monkeypatch.delenv("CONVSCOPE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert default_cache_dir().name == "convscope-web"


# -- the event loop and the job table -----------------------------------------------------------

def test_a_large_upload_does_not_hold_up_healthz(app: Any, live_server: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The upload's decode is held until /healthz has answered: on the event loop it would hold
    /healthz up, and the test would wait for the health check in vain."""
    decoding, healthy = threading.Event(), threading.Event()
    real = web_images.load_file_bytes

    def held(*args: Any, **kwargs: Any) -> Any:
        decoding.set()
        healthy.wait(WAIT_S)
        return real(*args, **kwargs)

    monkeypatch.setattr(web_images, "load_file_bytes", held)
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=live_server, timeout=WAIT_S) as http:
        upload = pool.submit(http.post, "/api/upload", files={"file": ("big.png", png(512), "image/png")})
        assert decoding.wait(WAIT_S)
        try:
            assert httpx.get(f"{live_server}/healthz", timeout=5).status_code == 200
        finally:
            healthy.set()
        assert upload.result().status_code == 200


def test_concurrent_uploads_and_cancels_lose_nothing_and_mix_nothing_up(app: Any, live_server: str
                                                                        ) -> None:
    blobs = [png(24, seed=s) for s in range(12)]
    jobs = app.state.cs.jobs

    def steps(progress: ProgressFn) -> JobResult:
        for i in range(1000):
            progress(i, 1000)
            threading.Event().wait(0.001)
        return JobResult({"finished": True})

    def upload(i: int) -> str:
        with httpx.Client(base_url=live_server, timeout=WAIT_S) as http:  # every upload is "same.png"
            reply = http.post("/api/upload", files={"file": ("same.png", blobs[i], "image/png")})
            assert reply.status_code == 200, reply.text
            return str(reply.json()["image"])

    def cancel(job_id: str) -> str:
        with httpx.Client(base_url=live_server, timeout=WAIT_S) as http:
            return str(http.post(f"/api/jobs/{job_id}/cancel").json()["status"])

    submitted = [jobs.submit("t", f"steps {i}", steps) for i in range(6)]
    with ThreadPoolExecutor(8) as pool:
        refs = pool.map(upload, range(len(blobs)))
        cancels = list(pool.map(cancel, [j.id for j in submitted]))
        refs = list(refs)
    assert refs == [f"upload:{hashlib.sha256(b).hexdigest()}" for b in blobs]
    assert all(status in ("cancelled", "running") for status in cancels)
    for job in submitted:
        assert job.wait(WAIT_S) and job.status == "cancelled"
    listed = {j["id"]: j["status"] for j in httpx.get(f"{live_server}/api/jobs").json()["jobs"]}
    assert all(listed[j.id] == "cancelled" for j in submitted)
    leftovers = [p for p in app.state.cs.cache.root.rglob("*.tmp*")]
    assert not leftovers
