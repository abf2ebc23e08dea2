"""The one way the web tests wait for a job: poll its status until a condition holds, or fail.

A timeout fails the test with the job's last state (a helper that handed back the unfinished job
let a test go on to assert against a job that had not run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

FINISHED = ("done", "failed", "cancelled")


def ended(job: dict[str, Any]) -> bool:
    return job["status"] in FINISHED


def wait_job(client: Any, job: dict[str, Any] | str, until: Callable[[dict[str, Any]], bool] = ended,
             seconds: float = 60) -> dict[str, Any]:
    """The job's status once ``until(status)`` holds (by default: it has ended); fails on timeout."""
    job_id = job if isinstance(job, str) else job["id"]
    deadline = time.monotonic() + seconds
    while True:
        state = client.get(f"/api/jobs/{job_id}").json()
        if until(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {state.get('status')} after {seconds} s: {state}")
        time.sleep(0.02)
