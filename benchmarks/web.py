"""The web app's overhead: from request to map through the HTTP API, against the task call alone.

    python -m benchmarks.web [--device cpu|cuda] [--no-jemalloc] [--repeats N] [--threads N]

The app (``convscope.web``) runs on uvicorn on 127.0.0.1 in this process, serving the
benchmark's model; an ``httpx`` client talks to it over loopback as a browser would. Per method
(Grad-CAM, and occlusion with the perturbation benchmark's 32x32 window, stride 16) four calls are
timed in alternating turns, so they share the machine's noise:

* ``task``: ``convscope.explain(model, "sample:cat", method, **options)``, the call the web job
  makes, in this thread (loading the image included, as the server loads it);
* ``+files``: the same plus the files the job adds: the map's gray levels as PNG and the ``.npy``;
* ``web``: ``POST /api/explain`` with ``"wait": true``, and the map's gray levels decoded from
  the answer (``data["levels"]``, the PNG the explainer page colours on a canvas over the photo
  it already shows; the full overlay ``map.png`` is drawn only when an export asks for it), with
  the disk cache emptied before each turn (untimed), so every request runs its job;
* ``cached``: the same request once its result is cached.

``web/task`` is the ratio the issue bounds (goal at most 1.1x), a ratio of medians that this
project's shared 2-core VM swings by tens of percent. So, as for ``explain()`` in RESULTS.md,
the cost is also split inside the same web requests, which the noise cannot move: ``method`` is
the method's own time (the job's ``data["seconds"]``), ``job`` the job from start to finish on the
worker (the server's ``seconds``); ``files`` = job - method (``explain()`` around the method, the levels
coloured and encoded, the cache written), ``http`` = web - job (HTTP, the request's checks, the
queue, the answer's way back). ``1+added/method`` = web / method over the same requests.

Last, a cached feature visualization (``GET /api/layers/{layer}/{channel}/visualization``, its
job JSON, then its picture) with the layer page's default settings; goal under 50 ms. And the
fastest of ten loopback ``GET /healthz``: goal under 30 ms (without TCP_NODELAY on the server's
connections every answer waited ~40 ms for the client's delayed ACK).
"""

from __future__ import annotations

import argparse
import base64
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from convscope.model import Model

from .timing import alternate

IMAGE = "sample:cat"
CASES: list[tuple[str, dict[str, Any]]] = [("gradcam", {}), ("occlusion", {"window": 32, "stride": 16})]
VIS_LAYER, VIS_CHANNEL = "_blocks.8", 0
GOAL_CACHED_MS = 50.0
GOAL_LOOPBACK_MS = 30.0


def files(result: Any) -> tuple[bytes, bytes]:
    """What the explain job adds to the task call: the map's gray levels as PNG and the map as
    ``.npy``, as the explainer makes them."""
    from convscope.render import png_bytes

    return png_bytes(result.levels(0)), result.save_array(0)


class WebClient:
    """The app on a loopback port, and the requests the benchmark times."""

    def __init__(self, model: Model, cache: Path) -> None:
        from convscope.web.app import create_app
        from convscope.web.config import ServeConfig
        from convscope.web.server import start_in_thread

        self.cache = cache
        self.app = create_app(ServeConfig(models=[model.name], cache_dir=cache), models=[(model.name, model)])
        self.server = start_in_thread(self.app)
        self.http = httpx.Client(base_url=self.server.url.rstrip("/"), timeout=600)
        self.model = model.name
        self.last: dict[str, Any] = {}

    def explain(self, method: str, options: dict[str, Any]) -> bytes:
        body = {"image": IMAGE, "method": method, "target": "top1", "layer": "auto", "options": options,
                "model": self.model, "faithfulness": False, "wait": True}
        reply = self.http.post("/api/explain", json=body)
        reply.raise_for_status()
        self.last = reply.json()
        if self.last["status"] != "done":
            raise RuntimeError(f"the explain job ended {self.last['status']}: {self.last.get('error')}")
        header, _, levels = self.last["data"]["levels"].partition(",")  # what the page shows
        if header != "data:image/png;base64":
            raise RuntimeError(f"the answer's levels are not a PNG data URL: {header[:40]!r}")
        return base64.b64decode(levels)

    def empty_cache(self) -> None:
        shutil.rmtree(self.cache / "results", ignore_errors=True)

    def picture(self, url: str) -> bytes:
        """A picture route's bytes: the PNG itself, or the finished job's first PNG file."""
        reply = self.http.get(url)
        reply.raise_for_status()
        if reply.headers["content-type"].startswith("image/"):
            return reply.content
        job = reply.json()
        while job["status"] in ("queued", "running"):
            time.sleep(0.05)
            job = self.http.get(f"/api/jobs/{job['id']}").json()
        if job["status"] != "done":
            raise RuntimeError(f"{url}: the job ended {job['status']}: {job.get('error')}")
        png = next(u for name, u in job["files"].items() if name.endswith(".png"))
        return self.http.get(png).raise_for_status().content

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.app.state.cs.close()


def method_row(web: WebClient, model: Model, method: str, options: dict[str, Any],
               repeats: int) -> dict[str, float]:
    """One method: the task call, the task with its files, the request uncached and cached.
    Prints the row and returns its milliseconds (``task``, ``files``, ``web``, ``cached``, the
    parts ``method``, ``job``, ``http``), with ``first_web`` the first request of the process
    and ``turns`` the web/task ratio of each turn (its spread shows the noise)."""
    from convscope import explain

    inside: list[tuple[float, float, float]] = []  # (web, job, method) seconds of each request

    def task() -> Any:
        return explain(model, IMAGE, method, target="top1", **options)

    def request() -> None:
        start = time.perf_counter()
        web.explain(method, options)
        inside.append((time.perf_counter() - start, web.last["seconds"], web.last["data"]["seconds"]))

    timed = alternate([task, lambda: files(task()), request, lambda: web.explain(method, options)],
                      device=model.device, repeats=repeats, prepare=[None, None, web.empty_cache, None])
    t_task, t_files, t_web, t_cached = timed.times
    ms = [1000 * statistics.median(t) for t in (t_task, t_files, t_web, t_cached)]
    requests = inside[1:]  # the warm-up's request excluded
    part = {name: 1000 * statistics.median(values) for name, values in (
        ("method", [m for _, _, m in requests]), ("files", [j - m for _, j, m in requests]),
        ("http", [w - j for w, j, _ in requests]))}
    added = statistics.median([w / m for w, _, m in requests])
    name = " ".join([method, *(f"{k}={v}" for k, v in options.items())])
    print(f"{name:<32} {ms[0]:8.1f} {ms[1]:8.1f} {ms[2]:8.1f} {ms[2] / ms[0]:8.2f} {part['method']:8.1f} "
          f"{part['files']:8.1f} {part['http']:8.1f} {added:8.2f} {ms[3]:8.1f}")
    return {"task": ms[0], "files": ms[1], "web": ms[2], "cached": ms[3], **part,
            "first_web": 1000 * timed.first[2], "task_min": 1000 * min(t_task), "web_min": 1000 * min(t_web),
            "turns": [w / t for w, t in zip(t_web, t_task)]}  # type: ignore[dict-item]


def cached_visualization_ms(web: WebClient, repeats: int) -> float | None:
    """Median ms of a cached feature visualization (its job JSON, then its picture), or None
    with the reason printed when it could not be computed."""
    url = f"/api/layers/{VIS_LAYER}/{VIS_CHANNEL}/visualization"
    try:
        web.picture(url)  # computed once (a job), then cached on disk
        ms = 1000 * statistics.median(alternate([lambda: web.picture(url)], device=torch.device("cpu"),
                                                repeats=max(repeats, 10)).times[0])
    except (httpx.HTTPStatusError, RuntimeError) as err:
        print(f"cached visualization {url}: not measured ({err})")
        return None
    print(f"cached visualization {url}: {ms:.1f} ms median "
          f"({'ok' if ms < GOAL_CACHED_MS else 'over'}, goal {GOAL_CACHED_MS:.0f} ms)")
    return ms


def web_rows(model: Model, device: torch.device, repeats: int = 5) -> None:
    """Print request-to-map times through the HTTP API beside the task call, and the cached
    visualization (see the module docstring)."""
    cache = Path(tempfile.mkdtemp(prefix="convscope-bench-web-"))
    web = WebClient(model, cache)
    try:
        print(f"\n== web: request to map through the HTTP API (127.0.0.1, {IMAGE}, target top1), "
              f"{repeats} turns, medians")
        print(f"{'ms':<32} {'task':>8} {'+files':>8} {'web':>8} {'web/task':>8} {'method':>8} "
              f"{'files':>8} {'http':>8} {'1+add/m':>8} {'cached':>8}")
        for method, options in CASES:
            method_row(web, model, method, options, repeats)
        cached_visualization_ms(web, repeats)
        healthz = alternate([lambda: web.http.get("/healthz").raise_for_status()],
                            device=torch.device("cpu"), repeats=10).times[0]
        fastest = 1000 * min(healthz)
        print(f"fastest loopback GET /healthz of 10: {fastest:.1f} ms "
              f"({'ok' if fastest < GOAL_LOOPBACK_MS else 'over'}, goal {GOAL_LOOPBACK_MS:.0f} ms: "
              "no wait for the client's delayed ACK)")
    finally:
        web.close()
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    from convscope.model import load_model

    from .run import reexec_with_jemalloc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-jemalloc", action="store_true")
    parser.add_argument("--repeats", type=int, default=5, help="timed turns of each row")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu" and not args.no_jemalloc:
        reexec_with_jemalloc("benchmarks.web")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"web benchmark: torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    web_rows(load_model("efficientnet_lite0", device=device), device, repeats=args.repeats)


if __name__ == "__main__":
    main()
