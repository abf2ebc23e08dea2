"""The jobs page in Chromium: a running job streams its progress and the cancel button stops it."""

from __future__ import annotations

import threading
from typing import Any

from convscope.web.cache import JobResult


def test_a_running_job_shows_progress_and_can_be_cancelled(app: Any, live_server: str, page: Any) -> None:
    import torch

    started, release = threading.Event(), threading.Event()

    def slow(progress: Any) -> JobResult:
        started.set()
        progress(1, 10)
        x = torch.zeros(2)
        while True:
            x = x + 1
            if release.wait(0.01):
                progress(2, 10)

    job = app.state.cs.jobs.submit("test", "slow job", slow)
    assert started.wait(10)
    page.goto(f"{live_server}/jobs")
    row = page.locator(f'tr[data-job="{job.id}"]')
    row.locator(".cs-job progress").wait_for()
    release.set()
    page.wait_for_function(f"""() => document.querySelector('tr[data-job="{job.id}"] .cs-job-status')
                               .textContent.includes('/10')""")
    row.locator("button.cs-cancel").click()
    page.wait_for_function(f"""() => document.querySelector('tr[data-job="{job.id}"] .cs-job')
                               .dataset.status === 'cancelled'""")
    assert job.status == "cancelled"
    assert not page.console_errors
