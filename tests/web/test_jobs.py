"""The job system (``web/jobs.py``) seen through its HTTP routes: progress streamed in order over
server-sent events, cancel before the start and after the end, failures in one line, cached results.

Jobs are submitted to the app's own ``JobManager`` (as page handlers do) with functions the test
controls step by step, so every check is deterministic: nothing relies on timing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from convscope.errors import BadArgument
from convscope.types import ProgressFn
from convscope.web.cache import JobResult

WAIT_S = 30.0
STEPS = 5


def events(http: httpx.Client, job_id: str) -> Iterator[dict[str, Any]]:
    """The JSON messages of a job's event stream, as they arrive."""
    with http.stream("GET", "/api/events", params={"jobs": job_id}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line.removeprefix("data: "))


def blocking(started: threading.Event, release: threading.Event) -> Callable[[ProgressFn], JobResult]:
    def fn(progress: ProgressFn) -> JobResult:
        started.set()
        assert release.wait(WAIT_S)
        return JobResult({"blocked": True})

    return fn


def test_progress_streams_in_order_over_sse(app: Any, live_server: str) -> None:
    """Each step waits until the client has seen the previous one: the stream shows every step."""
    seen_step = [threading.Event() for _ in range(STEPS)]

    def count(progress: ProgressFn) -> JobResult:
        for i in range(STEPS):
            progress(i + 1, STEPS)
            assert seen_step[i].wait(WAIT_S), f"the client never saw step {i + 1}"
        return JobResult({"answer": 42}, {"answer.json": b'{"answer": 42}'})

    job = app.state.cs.jobs.submit("test", "counting", count)
    messages = []
    with httpx.Client(base_url=live_server, timeout=WAIT_S) as http:
        for message in events(http, job.id):
            messages.append(message)
            if message["status"] == "running" and message["done"] >= 1:
                seen_step[message["done"] - 1].set()
        steps = [m["done"] for m in messages if m["status"] == "running" and m["done"]]
        assert steps == list(range(1, STEPS + 1))
        assert all(m["total"] == STEPS for m in messages if m["done"])
        statuses = [m["status"] for m in messages]
        order = ["queued", "running", "done"]
        assert statuses[-1] == "done" and statuses.count("done") == 1
        assert statuses == sorted(statuses, key=order.index)  # queued, then running, then done
        last = messages[-1]
        assert last["data"] == {"answer": 42} and last["error"] is None
        assert http.get(last["files"]["answer.json"]).json() == {"answer": 42}


def test_cancel_before_the_start(app: Any, client: Any) -> None:
    started, release, ran = threading.Event(), threading.Event(), threading.Event()
    first = app.state.cs.jobs.submit("test", "blocker", blocking(started, release))
    second = app.state.cs.jobs.submit("test", "never", lambda progress: ran.set() or JobResult())
    try:
        assert started.wait(WAIT_S)
        reply = client.post(f"/api/jobs/{second.id}/cancel")
        assert reply.status_code == 200 and reply.json()["status"] in ("queued", "cancelled")
    finally:
        release.set()
    assert second.wait(WAIT_S) and first.wait(WAIT_S)
    got = client.get(f"/api/jobs/{second.id}").json()
    assert got["status"] == "cancelled" and got["error"] is None and not ran.is_set()
    assert client.get(f"/api/jobs/{first.id}").json()["status"] == "done"  # the running one went on


def test_cancelling_a_finished_job_changes_nothing(app: Any, client: Any) -> None:
    job = app.state.cs.jobs.submit("test", "quick", lambda p: JobResult({"n": 1}, {"n.txt": b"one"}))
    assert job.wait(WAIT_S)
    before = client.get(f"/api/jobs/{job.id}").json()
    reply = client.post(f"/api/jobs/{job.id}/cancel")
    assert reply.status_code == 200 and reply.json() == before
    assert before["status"] == "done" and before["data"] == {"n": 1}
    assert client.get(before["files"]["n.txt"]).content == b"one"


def test_a_running_job_cancelled_over_http_stops(app: Any, client: Any) -> None:
    """The cancel reaches a job between two progress calls (``progress`` raises)."""
    started, steps = threading.Event(), []

    def forever(progress: ProgressFn) -> JobResult:
        started.set()
        for i in range(10**6):
            progress(i, 10**6)
            steps.append(i)
            threading.Event().wait(0.01)
        return JobResult()

    job = app.state.cs.jobs.submit("test", "forever", forever)
    assert started.wait(WAIT_S)
    assert client.post(f"/api/jobs/{job.id}/cancel").status_code == 200
    assert job.wait(WAIT_S)
    assert client.get(f"/api/jobs/{job.id}").json()["status"] == "cancelled"
    assert len(steps) < 10**6


def _failed(client: Any, job: Any) -> dict[str, Any]:
    assert job.wait(WAIT_S)
    got = client.get(f"/api/jobs/{job.id}").json()
    text = json.dumps(got)
    assert got["status"] == "failed" and got["data"] is None and got["files"] == {}
    assert "\n" not in got["error"] and "Traceback" not in text and 'File "' not in text
    return got


def test_a_failed_job_says_why_in_one_line(app: Any, client: Any) -> None:
    def bad(progress: ProgressFn) -> JobResult:
        progress(1, 3)
        raise BadArgument("steps 0:\n  give at least 1 step")

    got = _failed(client, app.state.cs.jobs.submit("test", "bad input", bad))
    assert got["error"] == "steps 0: give at least 1 step"
    # and the stream's last message says the same
    with client.stream("GET", "/api/events", params={"jobs": got["id"]}) as reply:
        last = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: ")][-1]
    assert last["status"] == "failed" and last["error"] == got["error"]


def test_a_bug_in_a_job_is_failed_without_a_traceback(app: Any, client: Any) -> None:
    def buggy(progress: ProgressFn) -> JobResult:
        return {}["missing"]  # type: ignore[no-any-return]

    got = _failed(client, app.state.cs.jobs.submit("test", "buggy", buggy))
    assert got["error"].startswith("internal error (KeyError")
    assert client.get("/jobs").status_code == 200  # the jobs page lists it without failing


def test_a_cached_result_is_answered_at_once(app: Any, client: Any) -> None:
    calls: list[int] = []
    key = app.state.cs.cache.key("test", "cached result", 1)

    def compute(progress: ProgressFn) -> JobResult:
        calls.append(1)
        return JobResult({"value": 7}, {"value.bin": bytes(range(256))})

    first = app.state.cs.jobs.submit("test", "cached", compute, key=key)
    assert first.wait(WAIT_S) and first.status == "done"
    second = app.state.cs.jobs.submit("test", "cached", compute, key=key)
    assert second.id != first.id and second.status == "done"  # finished on submit, not queued
    assert calls == [1]
    got = client.get(f"/api/jobs/{second.id}").json()
    assert got["data"] == {"value": 7} and got["message"] == "cached"
    assert client.get(got["files"]["value.bin"]).content == bytes(range(256))
    assert client.get(f"/api/jobs/{second.id}/files/value.bin").content == bytes(range(256))
    # another key runs again
    third = app.state.cs.jobs.submit("test", "cached", compute, key=app.state.cs.cache.key("test", 2))
    assert third.wait(WAIT_S) and calls == [1, 1]


def test_the_same_key_in_flight_is_one_job(app: Any) -> None:
    started, release = threading.Event(), threading.Event()
    key = app.state.cs.cache.key("test", "in flight")
    first = app.state.cs.jobs.submit("test", "slow", blocking(started, release), key=key)
    try:
        assert started.wait(WAIT_S)
        assert app.state.cs.jobs.submit("test", "slow", blocking(started, release), key=key) is first
    finally:
        release.set()
    assert first.wait(WAIT_S) and first.status == "done"


def test_unknown_jobs_and_files_are_404(app: Any, client: Any) -> None:
    job = app.state.cs.jobs.submit("test", "quick", lambda p: JobResult({}, {"a.txt": b"a"}))
    assert job.wait(WAIT_S)
    for url in ("/api/jobs/nope", "/api/events?jobs=nope", "/api/jobs/nope/cancel",
                f"/api/jobs/{job.id}/files/b.txt", f"/api/jobs/{job.id}/files/..%2Fa.txt",
                "/api/results/0123456789abcdef/a.txt"):
        reply = client.post(url) if url.endswith("cancel") else client.get(url)
        assert reply.status_code == 404, url
        assert "\n" not in reply.json()["error"], url
