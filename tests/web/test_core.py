"""The web core: jobs, cache, image references, path safety, token, limits, error answers."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from convscope.errors import BadArgument
from convscope.web.cache import JobResult
from convscope.web.config import ServeConfig
from convscope.web.images import resolve_image
from tests.web.polling import wait_job


def test_a_job_runs_reports_progress_and_serves_its_files(app: Any, client: TestClient) -> None:
    def fn(progress: Any) -> JobResult:
        for i in range(3):
            progress(i + 1, 3)
        return JobResult({"answer": 42}, {"out.txt": b"hello"})

    job = app.state.cs.jobs.submit("test", "three steps", fn)
    done = wait_job(client, job.as_json())
    assert done["status"] == "done" and done["data"] == {"answer": 42}
    assert (done["done"], done["total"]) == (3, 3)
    assert client.get(done["files"]["out.txt"]).content == b"hello"
    events = client.get("/api/events", params={"jobs": job.id}).text
    assert '"status": "done"' in events and events.startswith("data: ")
    assert any(j["id"] == job.id for j in client.get("/api/jobs").json()["jobs"])
    assert job.id in client.get("/jobs", headers={"accept": "text/html"}).text


def test_one_event_stream_follows_several_jobs_to_their_ends(app: Any, client: TestClient) -> None:
    """``/api/events?jobs=A,B`` carries every change of both jobs and ends when both have ended;
    B finishes only after A has, so the stream must stay open past A's last message."""
    a_done = threading.Event()

    def first(progress: Any) -> JobResult:
        progress(1, 2)
        progress(2, 2)
        return JobResult({"job": "a"}, {})

    def second(progress: Any) -> JobResult:
        a_done.wait(10)
        progress(1, 1)
        return JobResult({"job": "b"}, {})

    a = app.state.cs.jobs.submit("test", "first", first)
    b = app.state.cs.jobs.submit("test", "second", second)
    threading.Timer(0.3, a_done.set).start()
    messages = [json.loads(line[len("data: "):]) for line in
                client.get("/api/events", params={"jobs": f"{a.id},{b.id}"}).text.splitlines()
                if line.startswith("data: ")]
    last = {m["id"]: m for m in messages}
    assert last[a.id]["status"] == "done" and last[a.id]["data"] == {"job": "a"}
    assert last[b.id]["status"] == "done" and last[b.id]["data"] == {"job": "b"}
    assert {m["id"] for m in messages} == {a.id, b.id}


@pytest.mark.parametrize("jobs, status", [
    ("", 400), (",".join(f"x{i}" for i in range(201)), 400), ("nope-1", 404)])
def test_a_bad_list_of_jobs_to_follow_is_a_4xx(client: TestClient, jobs: str, status: int) -> None:
    got = client.get("/api/events", params={"jobs": jobs})
    assert got.status_code == status and got.json()["error"]


def test_a_short_call_runs_between_a_jobs_steps_once_its_model_is_at_rest(app: Any) -> None:
    """A page's short call on a model waits for the running job only while the job has the
    model in a state of its own (here a forward hook); then it runs between two of the job's
    steps, on the worker, long before the job ends (top classes waited 26 s behind a lab job)."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    hooked, released, stop = threading.Event(), threading.Event(), threading.Event()
    jobs = app.state.cs.jobs

    def fn(progress: Any) -> JobResult:
        handle = net.register_forward_hook(lambda m, i, o: o * 0)  # a job's hook: zeroes outputs
        hooked.set()
        try:
            while not released.is_set():
                progress(0, 2)
                time.sleep(0.01)
        finally:
            handle.remove()
        while not stop.is_set():  # the model at rest, the job still running
            progress(1, 2)
            time.sleep(0.01)
        return JobResult({}, {})

    job = jobs.submit("test", "long steps", fn)
    assert hooked.wait(10)
    answers: list[Any] = []
    caller = threading.Thread(target=lambda: answers.append(
        jobs.run(lambda: net(torch.ones(1, 3)).abs().sum().item(), model=net)))
    caller.start()
    try:
        caller.join(0.3)
        assert caller.is_alive() and not answers  # the job's hook is on the model: the call waits
        released.set()
        caller.join(10)
        assert answers and answers[0] > 0 and job.status == "running"  # not the hook's zeros
    finally:
        released.set()
        stop.set()
        caller.join(10)
    assert job.wait(10) and job.status == "done"
    assert not net[0]._forward_hooks


def test_a_keyed_result_is_cached_on_disk_and_reused(app: Any, client: TestClient) -> None:
    calls = []

    def fn(progress: Any) -> JobResult:
        calls.append(1)
        return JobResult({"n": len(calls)}, {"a.png": b"\x89PNG"})

    key = app.state.cs.cache.key("test-cache", 1)
    first = wait_job(client, app.state.cs.jobs.submit("t", "cached", fn, key=key).as_json())
    second = app.state.cs.jobs.submit("t", "cached", fn, key=key)
    assert second.status == "done" and calls == [1] and second.as_json()["data"] == first["data"]
    assert first["files"]["a.png"] == f"/api/results/{key}/a.png"
    assert client.get(first["files"]["a.png"]).content == b"\x89PNG"


def test_cancel_stops_a_running_job_mid_torch_call(app: Any, client: TestClient) -> None:
    import torch

    started = threading.Event()

    def fn(progress: Any) -> JobResult:
        started.set()
        x = torch.zeros(4)
        while True:  # never calls progress: only the torch-function check can stop it
            x = x + 1

    job = app.state.cs.jobs.submit("t", "forever", fn)
    assert started.wait(10)
    assert client.post(f"/api/jobs/{job.id}/cancel").status_code == 200
    assert wait_job(client, job.as_json())["status"] == "cancelled"
    quick = app.state.cs.jobs.submit("t", "after", lambda progress: JobResult({"ok": True}))
    assert wait_job(client, quick.as_json())["status"] == "done"


def test_a_failed_job_has_a_one_line_message(app: Any, client: TestClient) -> None:
    def fn(progress: Any) -> JobResult:
        raise BadArgument("steps=0: give a positive number")

    done = wait_job(client, app.state.cs.jobs.submit("t", "bad", fn).as_json())
    assert done["status"] == "failed" and done["error"] == "steps=0: give a positive number"


@pytest.mark.parametrize("ref", ["folder:images/../../etc/passwd", "folder:images//etc/passwd",
                                 "folder:images/..%2F..%2Fetc%2Fpasswd", "folder:nope/x.png", "/etc/passwd",
                                 "../../etc/passwd", "upload:../../etc/passwd", "sample:../etc/passwd",
                                 "atlas:../x/0", "folder:images/sub/../../../etc/passwd"])
def test_image_references_outside_the_folders_are_refused(client: TestClient, ref: str) -> None:
    r = client.get("/api/images/check", params={"image": ref})
    assert 400 <= r.status_code < 500, r.text
    assert "Traceback" not in r.text and r.json()["error"]


def test_a_link_leading_out_of_the_folder_is_refused(app: Any, image_folder: Path) -> None:
    link = image_folder / "escape.png"
    if not link.exists():
        os.symlink("/etc/hostname", link)
    try:
        with pytest.raises(Exception, match="outside the served folder"):
            resolve_image(app.state.cs, f"folder:{image_folder.name}/escape.png")
    finally:
        link.unlink()


def test_folder_images_and_samples_resolve(app: Any, client: TestClient, image_folder: Path) -> None:
    refs = [c["ref"] for c in client.get("/api/images").json()["images"]]
    assert f"folder:{image_folder.name}/sub/gray.png" in refs and "sample:cat" in refs
    assert tuple(resolve_image(app.state.cs, f"folder:{image_folder.name}/noise.png").shape) == (3, 40, 48)


def test_uploads_are_checked_stored_and_limited(make_app: Any) -> None:
    app = make_app(models=("digits_cnn",), max_upload_bytes=2000)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        import io

        import numpy as np
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "PNG")
        ok = c.post("/api/upload", files={"file": ("a.png", buf.getvalue(), "image/png")})
        assert ok.status_code == 200 and ok.json()["image"].startswith("upload:")
        assert c.get("/api/images/check", params={"image": ok.json()["image"]}).status_code == 200
        empty = c.post("/api/upload", files={"file": ("e.png", b"", "image/png")})
        assert empty.status_code == 400 and "empty" in empty.json()["error"]
        text = c.post("/api/upload", files={"file": ("t.png", b"not an image at all", "image/png")})
        assert text.status_code == 400 and "t.png" in text.json()["error"]
        big = c.post("/api/upload", files={"file": ("big.png", b"x" * 100_000, "image/png")})
        assert big.status_code == 413 and "limit" in big.json()["error"]


def test_unknown_pages_and_jobs_are_clear_404s(client: TestClient) -> None:
    page = client.get("/no/such/page", headers={"accept": "text/html"})
    assert page.status_code == 404 and "no page" in page.text and "Traceback" not in page.text
    assert client.get("/api/jobs/nope").json()["error"].startswith("no job")
    assert client.get("/api/results/abc123/../../x").status_code == 404
    assert client.get("/api/results/0123456789abcdef/..%2f..%2fetc%2fpasswd").status_code == 404


def test_a_token_is_required_when_set(make_app: Any) -> None:
    app = make_app(models=("digits_cnn",), token="s3cret")
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/api/jobs").status_code == 403
        assert c.get("/api/jobs", headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/jobs?token=s3cret").status_code == 200
        assert c.get("/api/jobs").status_code == 200  # the cookie set by the first visit


def test_a_remote_host_needs_a_flag_and_gets_a_token(tmp_path: Path) -> None:
    with pytest.raises(BadArgument, match="--allow-remote"):
        ServeConfig(host="0.0.0.0", cache_dir=tmp_path).secure(allow_remote=False)
    config = ServeConfig(host="0.0.0.0", cache_dir=tmp_path).secure(allow_remote=True)
    assert config.token and len(config.token) > 20 and f"token={config.token}" in config.url
    assert ServeConfig(cache_dir=tmp_path).secure(allow_remote=False).token is None


def test_serve_refuses_bad_options_in_one_line(capsys: Any, tmp_path: Path) -> None:
    from convscope.cli.main import main

    assert main(["serve", "--host", "0.0.0.0", "--model", "digits_cnn", "--cache", str(tmp_path)]) == 2
    assert main(["serve", "--images", str(tmp_path / "missing"), "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--allow-remote" in err[0] and "--images" in err[1]
