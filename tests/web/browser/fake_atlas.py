"""A test-only stand-in for the atlas API (COMMON.md), served from synthetic numpy data.

It lets the map page be driven in a browser without a scan: ``make_fake_atlas(n)`` makes ``n``
points in ten Gaussian clusters (labels, predictions with a known error rate, confidences,
PCA-like and t-SNE-like coordinates, coloured thumbnails), and :func:`fake_router` serves them
with the same routes and byte layouts the real ``web/atlas_pages.py`` serves. The tests compare
what the page shows with these arrays, so what they check is known in advance, not read back
from the page.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image

from convscope.types import ProgressFn
from convscope.web.cache import JobResult
from convscope.web.pages import render

PALETTE = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]],
                   dtype=np.uint8)


@dataclass
class FakeAtlas:
    labels: np.ndarray          # (n,) int32, -1 = unknown
    predictions: np.ndarray     # (n,) int32
    confidence: np.ndarray      # (n,) float32
    coords: dict[str, np.ndarray]  # method -> (n, 2) float32
    class_names: list[str]
    thumb_size: int = 8
    tile_side: int = 16
    layers: list[str] = field(default_factory=lambda: ["features.4", "classifier.1"])
    _tiles: dict[int, bytes] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.labels)

    def source(self, i: int) -> str:
        return f"images/{self.class_names[self.labels[i]] if self.labels[i] >= 0 else 'none'}/img_{i:06d}.png"

    def thumbnails(self, indices: np.ndarray) -> np.ndarray:
        """(k, t, t, 3): the label's colour, a white row that encodes ``i % t`` (so thumbnails differ)."""
        t = self.thumb_size
        out = np.empty((len(indices), t, t, 3), np.uint8)
        out[:] = PALETTE[np.maximum(self.labels[indices], 0) % 10][:, None, None, :]
        out[np.arange(len(indices)), np.asarray(indices) % t, :, :] = 255
        return out

    def tile_png(self, t: int) -> bytes:
        if t not in self._tiles:
            # row-major, and only as many rows as the tile fills (as the real tiles are)
            per, s, side = self.tile_side ** 2, self.thumb_size, self.tile_side
            idx = np.arange(t * per, min(self.n, (t + 1) * per))
            rows = -(-len(idx) // side)
            sheet = np.zeros((rows * side, s, s, 3), np.uint8)
            sheet[:len(idx)] = self.thumbnails(idx)
            sheet = sheet.reshape(rows, side, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(rows * s, side * s, 3)
            self._tiles[t] = png(sheet)
        return self._tiles[t]

    def row(self, i: int) -> dict[str, Any]:
        return {"index": i, "source": self.source(i), "label": int(self.labels[i]),
                "prediction": int(self.predictions[i]), "confidence": float(self.confidence[i])}


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def make_fake_atlas(n: int, *, seed: int = 0, wrong: float = 0.1, skipped: int = 0) -> FakeAtlas:
    """``n`` points in ten clusters; a fraction ``wrong`` of them mispredicted (as the next class);
    every ``skipped``-th item unreadable, as a scan records it (no label, prediction, confidence
    or coordinates)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.int32)
    flip = rng.random(n) < wrong
    predictions = np.where(flip, (labels + 1) % 10, labels).astype(np.int32)
    confidence = np.where(flip, rng.uniform(0.3, 0.6, n), rng.uniform(0.7, 1.0, n)).astype(np.float32)
    angle = labels * (2 * np.pi / 10)
    centres = np.stack([np.cos(angle), np.sin(angle)], 1) * 10
    pca = (centres + rng.normal(0, 1.2, (n, 2))).astype(np.float32)
    tsne = (centres * 3 + rng.normal(0, 2.0, (n, 2))).astype(np.float32)
    if skipped:
        gone = slice(0, n, skipped)
        labels[gone], predictions[gone], confidence[gone] = -1, -1, np.nan
        pca[gone], tsne[gone] = np.nan, np.nan
    return FakeAtlas(labels, predictions, confidence, {"pca": pca, "tsne": tsne, "umap": pca[:, ::-1].copy()},
                     [str(c) for c in range(10)])


def fake_router(atlases: dict[str, FakeAtlas], projection_seconds: float = 0.6) -> APIRouter:
    """The atlas page and API routes over ``atlases``. A projection is a real job on the app's
    worker (``projection_seconds`` long, with progress) the first time, cached after."""
    router = APIRouter()
    exports: list[dict[str, Any]] = []
    projected: list[str] = []
    router.exports = exports  # type: ignore[attr-defined]  # what the page posted, for the tests
    router.projected = projected  # type: ignore[attr-defined]

    def get(atlas_id: str) -> FakeAtlas:
        if atlas_id not in atlases:
            raise HTTPException(404, f"no atlas '{atlas_id}'")
        return atlases[atlas_id]

    def info(a: FakeAtlas) -> dict[str, Any]:
        return {"n": a.n, "layers": a.layers, "class_names": a.class_names, "thumb_size": a.thumb_size,
                "tile_side": a.tile_side, "tile_count": -(-a.n // a.tile_side ** 2), "model": "fake"}

    @router.get("/atlas/{atlas_id}/{layer}")
    def page(request: Request, atlas_id: str, layer: str, method: str = "pca", color: str = "label",
             align_to: str | None = None) -> Any:
        return render(request, "atlas_map.html", atlas=atlas_id, layer=layer, info=info(get(atlas_id)),
                      method=method, color=color, align_to=align_to)

    @router.get("/api/atlas/{atlas_id}/info")
    def atlas_info(atlas_id: str) -> dict[str, Any]:
        return info(get(atlas_id))

    @router.get("/api/atlas/{atlas_id}/tiles/{t}.png")
    def tile(atlas_id: str, t: int) -> Response:
        a = get(atlas_id)
        if not 0 <= t < -(-a.n // a.tile_side ** 2):
            raise HTTPException(404, f"no tile {t}")
        return Response(a.tile_png(t), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @router.get("/api/atlas/{atlas_id}/thumbs/{index}.png")
    def thumb(atlas_id: str, index: int) -> Response:
        a = get(atlas_id)
        if not 0 <= index < a.n:
            raise HTTPException(404, f"no image {index}")
        return Response(png(a.thumbnails(np.array([index]))[0]), media_type="image/png")

    @router.get("/api/atlas/{atlas_id}/columns/{name}")
    def column(atlas_id: str, name: str) -> Response:
        a = get(atlas_id)
        arrays = {"labels": a.labels.astype("<i4"), "predictions": a.predictions.astype("<i4"),
                  "confidence": a.confidence.astype("<f4")}
        if name not in arrays:
            raise HTTPException(404, f"no column '{name}'")
        return Response(arrays[name].tobytes(), media_type="application/octet-stream")

    @router.post("/api/atlas/{atlas_id}/{layer}/projection")
    async def projection(atlas_id: str, layer: str, request: Request) -> dict[str, Any]:
        body = await request.json()
        if body.get("method") not in get(atlas_id).coords:
            raise HTTPException(400, f"unknown method {body.get('method')!r}")

        def work(progress: ProgressFn) -> JobResult:
            for step in range(6):
                progress(step, 6)
                time.sleep(projection_seconds / 6)
            progress(6, 6)
            return JobResult({"method": body["method"]})

        state = request.app.state.cs
        key = state.cache.key("fake-projection", id(router), atlas_id, layer, body["method"])
        job = state.jobs.submit("projection", f"{body['method']} of {atlas_id}", work, key=key)
        projected.append(job.status)
        return job.as_json()

    @router.get("/api/atlas/{atlas_id}/{layer}/projection/{method}/coords")
    def coords(atlas_id: str, layer: str, method: str) -> Response:
        a = get(atlas_id)
        if method not in a.coords:
            raise HTTPException(404, f"no {method} projection")
        return Response(a.coords[method].astype("<f4").tobytes(), media_type="application/octet-stream")

    @router.get("/api/atlas/{atlas_id}/search")
    def search(atlas_id: str, q: str) -> dict[str, Any]:
        a = get(atlas_id)
        return {"indices": [i for i in range(a.n) if q == a.class_names[a.labels[i]] or q in a.source(i)]}

    @router.post("/api/atlas/{atlas_id}/items")
    async def items(atlas_id: str, request: Request) -> Any:
        a = get(atlas_id)
        return [a.row(int(i)) for i in (await request.json())["indices"]]

    @router.post("/api/atlas/{atlas_id}/{layer}/export")
    async def export(atlas_id: str, layer: str, request: Request, format: str = "csv") -> Response:
        body = await request.json()
        exports.append({"format": format, **body})
        a, rows = get(atlas_id), []
        for i in body["indices"]:
            x, y = a.coords[body["method"]][i]
            rows.append({**a.row(int(i)), "x": float(x), "y": float(y)})
        if format == "json":
            return JSONResponse(rows, headers={"Content-Disposition": "attachment; filename=selection.json"})
        lines = ["path,label,prediction,confidence,x,y"] + [
            f"{r['source']},{r['label']},{r['prediction']},{r['confidence']},{r['x']},{r['y']}" for r in rows]
        return Response("\n".join(lines), media_type="text/csv",
                        headers={"Content-Disposition": "attachment; filename=selection.csv"})

    @router.get("/api/atlas/{atlas_id}/confusion")
    def confusion(atlas_id: str) -> dict[str, Any]:
        a = get(atlas_id)
        m, ok = np.zeros((10, 10), int), (a.labels >= 0) & (a.predictions >= 0)
        np.add.at(m, (a.labels[ok], a.predictions[ok]), 1)
        return {"class_names": a.class_names, "matrix": m.tolist()}

    @router.get("/api/atlas/{atlas_id}/confusion/{true}/{pred}")
    def confusion_cell(atlas_id: str, true: int, pred: int) -> dict[str, Any]:
        a = get(atlas_id)
        return {"indices": np.flatnonzero((a.labels == true) & (a.predictions == pred)).tolist()}

    return router


__all__ = ["FakeAtlas", "fake_router", "make_fake_atlas"]
