"""Run web jobs at the memory bound in a process of their own: ``python -m tests.web.memory_probe
BUDGET CACHE JOBS_JSON`` prints, for each ``[url, body]`` of JOBS_JSON in turn, its status and its
peak memory growth (the process's resident high-water mark, reset before the job, less its
resident memory then), as JSON lines."""

from __future__ import annotations

import json
import sys

from fastapi.testclient import TestClient

from convscope.web.app import create_app
from convscope.web.config import ServeConfig


def resident(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the high-water mark) in bytes."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))


def main(budget: str, cache: str, jobs: str) -> None:
    config = ServeConfig(models=["digits_cnn"], cache_dir=cache, max_job_bytes=int(budget))
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        for url, body in json.loads(jobs):
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # the high-water mark starts again from the memory in use now
            before = resident("VmRSS")
            reply = client.post(url, json={**body, "wait": True})
            peak = resident("VmHWM")
            print(json.dumps({"code": reply.status_code, "status": reply.json().get("status"),
                              "error": reply.json().get("error"), "growth": peak - before}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
