"""The web dataset map at scale: a synthetic atlas of 100,000 points, projected and served.

    python -m benchmarks.atlas_map [--sizes 5000,20000,100000] [--methods pca,tsne,umap]
                                   [--dim 256] [--no-serve] [--keep DIR]

The benchmark writes its own atlases with the atlas store (:class:`convscope.data.atlas.Atlas`,
as ``convscope scan`` does): ``n`` points in ten Gaussian clusters of ``--dim`` dimensions
(float32 embeddings, one layer), 32 x 32 thumbnails (a disc of the cluster's colour on a dark
ground, mild noise), labels, and predictions that are 90% right. It then measures:

* **projection**: :func:`convscope.tasks.atlas_map.map_coords` (what the web job runs: chunked
  read of every valid embedding, then the library projection, openTSNE / umap-learn with their
  defaults, one thread) for each size and method; ``read`` is the embedding read, ``project`` the
  projection alone. UMAP's numba kernels are compiled once before timing.
(``--methods ""`` skips the projections.)

* **opening the map** of the largest atlas in ``convscope serve`` (uvicorn in a subprocess, a
  loopback HTTP client here): after the PCA projection job has run once (its time is reported)
  the server is restarted on the same cache, then the requests a map page makes are timed one
  after another: the page's HTML (when the map template is there), ``/api/atlas/{id}/info``, the
  projection POST (answered from the cache), the coordinates, the three columns and the first
  four thumbnail tiles. Goal: under 3 s. ``first`` is the first opening after the restart (the
  tiles are encoded then, and cached on disk), ``again`` the median of three more.
* **server memory**: the server's peak resident memory (``VmHWM``, reset through
  ``/proc/PID/clear_refs`` once it has started) minus its resident memory before the page,
  against the size of the layer's embeddings. Goal: far below the embeddings (pages and tiles
  read only what they need).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from convscope.data.atlas import Atlas, ImageRow, pack_state
from convscope.web.pages import TEMPLATES

LAYER = "features"
THUMB = 32
CLUSTERS = 10
CHUNK = 10_000


# ---- the synthetic atlas ----------------------------------------------------------------------
def synthetic_atlas(path: Path, n: int, dim: int, seed: int = 0) -> Atlas:
    """Write an atlas of ``n`` clustered points with the atlas store, chunk by chunk."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (CLUSTERS, dim)).astype(np.float32)
    colours = rng.integers(40, 216, (CLUSTERS, 3))
    labels = rng.integers(0, CLUSTERS, n)
    sources = [f"synthetic/{labels[i]}/{i:06d}.png" for i in range(n)]
    config = {"model": "synthetic", "model_fingerprint": f"synthetic-{n}-{dim}-{seed}",
              "layers": [LAYER], "k": 1, "dataset": None, "chunk_size": CHUNK,
              "class_names": [f"class {c}" for c in range(CLUSTERS)]}
    atlas = Atlas.create(path, config, sources, labels.tolist(), {LAYER: dim}, THUMB)
    for chunk, start in enumerate(range(0, n, CHUNK)):
        rows = np.arange(start, min(start + CHUNK, n))
        lab = labels[rows]
        emb = centres[lab] + rng.normal(0, 0.6, (len(rows), dim)).astype(np.float32)
        thumbs = _thumbnails(rng, colours[lab])
        wrong = rng.random(len(rows)) < 0.1
        pred = np.where(wrong, rng.integers(0, CLUSTERS, len(rows)), lab)
        prob = rng.uniform(0.3, 1.0, len(rows))
        atlas.write_arrays(rows.tolist(), {LAYER: emb}, thumbs)
        atlas.commit_chunk(chunk + 1, [ImageRow(int(i), int(a), int(p), float(q), "ok")
                                       for i, a, p, q in zip(rows, lab, pred, prob)], pack_state({}))
    atlas.finish({})
    return Atlas.open(path)


def _thumbnails(rng: np.random.Generator, colours: np.ndarray) -> np.ndarray:
    """(k, t, t, 3) uint8 pictures: a disc of the cluster's colour at a random place and size on a
    dark ground, with mild noise (compresses like small real images, unlike pure noise)."""
    k = len(colours)
    yy, xx = np.mgrid[0:THUMB, 0:THUMB]
    cy, cx = rng.uniform(8, THUMB - 8, (2, k, 1, 1))
    radius = rng.uniform(4, 12, (k, 1, 1))
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2)[..., None]
    ground = colours[:, None, None, :] // 4
    pixels = np.where(disc, colours[:, None, None, :], ground) + rng.integers(-6, 7, (k, THUMB, THUMB, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


# ---- projection --------------------------------------------------------------------------------
def projection_rows(atlases: dict[int, Atlas], methods: list[str]) -> list[dict[str, Any]]:
    from convscope.methods.dataset.projection import project
    from convscope.tasks.atlas_map import map_coords

    warnings.filterwarnings("ignore", category=UserWarning)  # umap's notes on n_jobs with a seed
    if "umap" in methods:  # numba compiles umap's and pynndescent's kernels once: not timed
        import torch

        project(torch.randn(300, 8, generator=torch.Generator().manual_seed(0)), "umap",
                n_epochs=10, force_approximation_algorithm=True)
    rows = []
    for n, atlas in sorted(atlases.items()):
        for method in methods:
            start = time.perf_counter()
            made = map_coords(atlas, LAYER, method)
            total = time.perf_counter() - start
            finite = int(np.isfinite(made.coords).all(1).sum())
            rows.append({"method": method, "points": n, "seconds": total,
                         "project": made.seconds, "read": total - made.seconds, "mapped": finite})
            print(f"  {method:5s} {n:7d} points  {total:8.2f} s  (read {total - made.seconds:.2f} s, "
                  f"{finite} points mapped)", flush=True)
    return rows


# ---- serving -------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` field in bytes."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


class Server:
    """``convscope serve``'s app on uvicorn in a subprocess (so its memory is its own)."""

    def __init__(self, atlas: Path, cache: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.atlas_map", "--serve", str(atlas), "--cache", str(cache),
             "--port", str(self.port)], env=env)
        import httpx

        self.client = httpx.Client(base_url=self.base, timeout=3600)
        deadline = time.time() + 120
        while True:
            try:
                if self.client.get("/api/atlas").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit("the benchmark server did not start")
            time.sleep(0.2)

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(30)


def serve_main(atlas: str, cache: str, port: int) -> None:
    import uvicorn

    from convscope.web.app import create_app
    from convscope.web.config import ServeConfig

    config = ServeConfig(models=["digits_cnn"], atlases=[Path(atlas)], cache_dir=Path(cache), port=port)
    uvicorn.run(create_app(config), host="127.0.0.1", port=port, log_level="warning")


def open_map(server: Server, atlas_id: str, method: str = "pca", tiles: int = 4) -> dict[str, float]:
    """Time the requests of one map page, one after another; returns seconds and bytes."""
    get = server.client.get
    start = time.perf_counter()
    sizes = {}
    sizes["page"] = 0
    if (TEMPLATES / "atlas_map.html").is_file():  # the map template (another module's) is there
        sizes["page"] = len(get(f"/atlas/{atlas_id}/{LAYER}?method={method}").raise_for_status().content)
    info = get(f"/api/atlas/{atlas_id}/info").raise_for_status().json()
    job = server.client.post(f"/api/atlas/{atlas_id}/{LAYER}/projection", json={"method": method})
    if job.raise_for_status().json()["status"] != "done":
        raise SystemExit("the projection was not cached")
    for column in ("labels", "predictions", "confidence"):
        sizes[column] = len(get(f"/api/atlas/{atlas_id}/columns/{column}").raise_for_status().content)
    coords = get(f"/api/atlas/{atlas_id}/{LAYER}/projection/{method}/coords").raise_for_status()
    sizes["coords"] = len(coords.content)
    for t in range(min(tiles, info["tile_count"])):
        sizes[f"tile {t}"] = len(get(f"/api/atlas/{atlas_id}/tiles/{t}.png").raise_for_status().content)
    seconds = time.perf_counter() - start
    if sizes["coords"] != info["n"] * 8:
        raise SystemExit(f"coords: {sizes['coords']} bytes for {info['n']} points")
    return {"seconds": seconds, "bytes": float(sum(sizes.values())), "page_html": float(sizes["page"] > 0)}


def serve_rows(path: Path, cache: Path, method: str = "pca") -> dict[str, float]:
    atlas_id = path.name
    server = Server(path, cache)
    try:
        start = time.perf_counter()
        job = server.client.post(f"/api/atlas/{atlas_id}/{LAYER}/projection",
                                 json={"method": method, "wait": True}).raise_for_status().json()
        while job["status"] not in ("done", "failed", "cancelled"):
            time.sleep(0.5)
            job = server.client.get(f"/api/jobs/{job['id']}").raise_for_status().json()
        if job["status"] != "done":
            raise SystemExit(f"projection job {job['status']}: {job.get('error')}")
        job_seconds = time.perf_counter() - start
    finally:
        server.close()
    server = Server(path, cache)  # fresh process, projection cached on disk
    try:
        server.client.get("/api/jobs").raise_for_status()  # imports and first-request set-up
        before = _status(server.proc.pid, "VmRSS")
        with open(f"/proc/{server.proc.pid}/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current resident set
        first = open_map(server, atlas_id, method)
        again = [open_map(server, atlas_id, method)["seconds"] for _ in range(3)]
        peak = _status(server.proc.pid, "VmHWM")
    finally:
        server.close()
    return {"job": job_seconds, "open_first": first["seconds"], "open_again": float(np.median(again)),
            "bytes": first["bytes"], "page_html": first["page_html"], "rss_before": before,
            "peak_growth": peak - before}


# ---- entry points ----------------------------------------------------------------------------------
def run(sizes: list[int], methods: list[str], dim: int, root: Path, serve: bool = True) -> None:
    atlases = {}
    for n in sizes:
        path = root / f"synthetic-{n}"
        if not (path / "atlas.sqlite").is_file():
            start = time.perf_counter()
            synthetic_atlas(path, n, dim)
            print(f"  wrote a synthetic atlas of {n:,} points x {dim} in {time.perf_counter() - start:.1f} s",
                  flush=True)
        atlases[n] = Atlas.open(path)
    rows = projection_rows(atlases, methods)
    print("\n| method | points | seconds (read + project) | read s |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['points']:,} | {r['seconds']:.2f} | {r['read']:.2f} |")
    if not serve:
        return
    largest = max(sizes)
    served = serve_rows(root / f"synthetic-{largest}", root / "cache")
    emb_bytes = largest * dim * 4
    thumb_bytes = largest * THUMB * THUMB * 3
    print(f"\nmap of {largest:,} points ({'with' if served['page_html'] else 'without'} the page's HTML):"
          f" PCA job {served['job']:.2f} s; opening once cached {served['open_first']:.3f} s first, "
          f"{served['open_again']:.3f} s again (median of 3), {served['bytes'] / 1e6:.1f} MB")
    print(f"server memory: {served['rss_before'] / 2**20:.0f} MiB resident before the page, peak "
          f"growth {served['peak_growth'] / 2**20:.1f} MiB while serving it; embeddings "
          f"{emb_bytes / 2**20:.0f} MiB, thumbnails {thumb_bytes / 2**20:.0f} MiB on disk")
    print(json.dumps({"projection": rows, "serve": served}))


def atlas_map_table(model: object, device: object) -> None:
    """For ``benchmarks.run``: the full benchmark in a temporary folder."""
    print("\n== web dataset map: synthetic atlas, projection 5k / 20k / 100k, serving 100k")
    with tempfile.TemporaryDirectory() as tmp:
        run([5000, 20000, 100000], ["pca", "tsne", "umap"], 256, Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000,100000")
    parser.add_argument("--methods", default="pca,tsne,umap")
    parser.add_argument("--dim", type=int, default=256, help="embedding dimensions (default 256)")
    parser.add_argument("--no-serve", action="store_true", help="only the projection timings")
    parser.add_argument("--keep", metavar="DIR", help="write (and reuse) the atlases here")
    parser.add_argument("--serve", metavar="ATLAS", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_main(args.serve, args.cache, args.port)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        run(sizes, methods, args.dim, Path(args.keep), not args.no_serve)
    else:
        root = Path(tempfile.mkdtemp(prefix="atlas-map-"))
        try:
            run(sizes, methods, args.dim, root, not args.no_serve)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
