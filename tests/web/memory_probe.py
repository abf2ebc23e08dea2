"""Run web jobs at the memory bound in a process of their own: ``python -m tests.web.memory_probe
BUDGET CACHE JOBS_JSON`` prints, for each ``[url, body]`` of JOBS_JSON in turn, its status and an
upper bound of its peak memory growth (the process's high-water mark after it, less its memory
just before it), as JSON lines."""

from __future__ import annotations

import json
import resource
import sys

from fastapi.testclient import TestClient

from convscope.web.app import create_app
from convscope.web.config import ServeConfig


def resident() -> int:
    with open("/proc/self/statm") as stat:
        return int(stat.read().split()[1]) * resource.getpagesize()


def main(budget: str, cache: str, jobs: str) -> None:
    config = ServeConfig(models=["digits_cnn"], cache_dir=cache, max_job_bytes=int(budget))
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        for url, body in json.loads(jobs):
            before = resident()
            reply = client.post(url, json={**body, "wait": True})
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            print(json.dumps({"code": reply.status_code, "status": reply.json().get("status"),
                              "error": reply.json().get("error"), "growth": peak - before}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
