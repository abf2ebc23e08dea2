"""The dataset map's server side on real scans of MNIST digits with digits_cnn: the atlas list,
the map page's context, every ``/api/atlas`` route, the projection job and its disk cache, aligned
maps, and the refusals: unknown atlas, layer, method, index or tile get a clear 4xx, and no path
outside the configured atlases is read (raw requests to a live server, audited file opens)."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from PIL import Image

from convscope.data.atlas import Atlas
from convscope.model import load_model
from convscope.render.tiles import thumbnail_tile
from convscope.tasks import atlas_map
from convscope.tasks.scan import scan_dataset
from convscope.web import atlas_pages
from convscope.web.server import start_in_thread
from tests.tasks.digits_atlas import digits_atlas

BROKEN = 12
SECRET = "the-secret-content-41"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``served/digits`` (layers block3, flatten) and ``served/digits-b`` (flatten; the same
    images) are configured; ``outside`` (a copy of digits) and ``secret.txt`` are not."""
    root = tmp_path_factory.mktemp("atlas-web")
    served = root / "served"
    digits = digits_atlas(served, "digits")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="scan skipped")
        scan_dataset(load_model("digits_cnn"), served / "digits-images", served / "digits-b",
                     layers=["flatten"], k=1, batch_size=16)
    shutil.copytree(digits, root / "outside")
    (root / "secret.txt").write_text(SECRET)
    return root


@pytest.fixture(scope="module")
def app(make_app: Callable[..., Any], root: Path) -> Any:
    served = root / "served"
    return make_app(models=("digits_cnn",), atlases=[served / "digits", served / "digits-b"],
                    cache_dir=root / "cache")


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture(scope="module")
def atlas(root: Path) -> Atlas:
    return Atlas.open(root / "served" / "digits")


def project(client: TestClient, atlas_id: str, layer: str, **body: Any) -> dict[str, Any]:
    answer = client.post(f"/api/atlas/{atlas_id}/{layer}/projection", json={**body, "wait": True})
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["status"] == "done", job
    return job


def coords_of(client: TestClient, url: str) -> np.ndarray:
    answer = client.get(url)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    return np.frombuffer(answer.content, dtype="<f4").reshape(-1, 2)


def test_atlas_list_and_info(client: TestClient) -> None:
    listed = client.get("/api/atlas").json()["atlases"]
    assert [a["id"] for a in listed] == ["digits", "digits-b"]
    assert listed[0]["n"] == 41 and listed[0]["layers"] == ["block3", "flatten"]
    info = client.get("/api/atlas/digits/info").json()
    assert info["n"] == 41 and info["model"] == "digits_cnn"
    assert info["class_names"] == [str(d) for d in range(10)]
    assert (info["thumb_size"], info["tile_side"], info["tile_count"]) == (28, 36, 1)
    page = client.get("/atlas", headers={"accept": "text/html"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for href in ("/atlas/digits/block3", "/atlas/digits/flatten", "/atlas/digits-b/flatten"):
        assert f'href="{href}"' in page.text


def test_map_page_passes_the_template_its_context(client: TestClient,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_render(request: Any, template: str, **context: Any) -> HTMLResponse:
        seen.update(context, template=template, embed=request.query_params.get("embed") == "1")
        return HTMLResponse("ok")

    monkeypatch.setattr(atlas_pages, "render", fake_render)
    answer = client.get("/atlas/digits/flatten?method=umap&color=correct&embed=1&align_to=digits-b:flatten")
    assert answer.status_code == 200
    assert seen["template"] == "atlas_map.html" and seen["atlas"] == "digits" and seen["layer"] == "flatten"
    assert (seen["method"], seen["color"], seen["align_to"], seen["embed"]) == ("umap", "correct",
                                                                                "digits-b:flatten", True)
    assert seen["info"]["n"] == 41 and seen["info"]["tile_side"] == 36
    client.get("/atlas/digits/block3")
    assert (seen["method"], seen["color"], seen["align_to"], seen["embed"]) == ("pca", "label", None, False)


def test_columns_tiles_and_thumbnails_are_the_stored_ones(client: TestClient, atlas: Atlas) -> None:
    labels = np.frombuffer(client.get("/api/atlas/digits/columns/labels").content, "<i4")
    preds = np.frombuffer(client.get("/api/atlas/digits/columns/predictions").content, "<i4")
    conf = np.frombuffer(client.get("/api/atlas/digits/columns/confidence").content, "<f4")
    assert labels.tolist() == atlas.labels().tolist() and preds.tolist() == atlas.predictions().tolist()
    assert len(conf) == 41 and np.isnan(conf[BROKEN]) and np.nanmin(conf) > 0
    tile = client.get("/api/atlas/digits/tiles/0.png")
    assert tile.headers["content-type"] == "image/png"
    assert client.get("/api/atlas/digits/tiles/0.png").content == tile.content  # from the disk cache
    with Image.open(io.BytesIO(tile.content)) as img:
        expected = np.asarray(thumbnail_tile(atlas.thumbnails(), 36))
        assert np.array_equal(np.asarray(img.convert("RGB")), expected)
    with Image.open(io.BytesIO(client.get("/api/atlas/digits/thumbs/40.png").content)) as img:
        assert np.array_equal(np.asarray(img.convert("RGB")), atlas.thumbnails([40])[0])


def test_projection_is_a_cached_job_and_its_coordinates_are_served(client: TestClient, atlas: Atlas) -> None:
    missing = client.get("/api/atlas/digits/flatten/projection/pca/coords")
    assert missing.status_code == 404 and "not computed yet" in missing.json()["error"]
    job = project(client, "digits", "flatten", method="pca")
    assert job["data"]["projected"] == 40 and job["data"]["n"] == 41
    served = coords_of(client, "/api/atlas/digits/flatten/projection/pca/coords")
    expected = atlas_map.map_coords(atlas, "flatten", "pca").coords
    assert np.array_equal(served, expected, equal_nan=True) and np.isnan(served[BROKEN]).all()
    assert np.array_equal(coords_of(client, job["files"]["coords.bin"]), served, equal_nan=True)
    again = client.post("/api/atlas/digits/flatten/projection", json={"method": "pca"}).json()
    assert again["status"] == "done" and again["message"] == "cached"


def test_a_map_aligned_to_another_atlas(client: TestClient, atlas: Atlas, root: Path) -> None:
    job = project(client, "digits", "block3", method="pca", align_to="digits-b:flatten")
    assert job["data"]["shared"] == 40 and job["data"]["align_to"] == "digits-b:flatten"
    served = coords_of(client, "/api/atlas/digits/block3/projection/pca/coords?align_to=digits-b:flatten")
    other = Atlas.open(root / "served" / "digits-b")
    expected = atlas_map.align_coords(atlas_map.map_coords(atlas, "block3", "pca").coords,
                                      atlas_map.map_coords(other, "flatten", "pca").coords,
                                      *atlas_map.shared_points(atlas, other))
    assert np.allclose(served, expected.coords, equal_nan=True, atol=1e-6)
    plain = coords_of(client, "/api/atlas/digits/block3/projection/pca/coords")  # cached on the way
    assert not np.allclose(plain[:5], served[:5])


def test_search_items_confusion_and_export(client: TestClient, atlas: Atlas) -> None:
    assert client.get("/api/atlas/digits/search", params={"q": "7"}).json() == {"indices": [29, 30, 31, 32]}
    assert client.get("/api/atlas/digits/search", params={"q": "d2_1"}).json() == {"indices": [9]}
    rows = client.post("/api/atlas/digits/items", json={"indices": [40, BROKEN]}).json()["rows"]
    assert rows[0]["index"] == 40 and rows[0]["label_name"] == "9" and rows[0]["source"].endswith("d9_3.png")
    assert rows[0]["prediction_name"] == str(rows[0]["prediction"])  # the served digits_cnn's labels
    assert rows[1]["status"] == "skipped" and rows[1]["prediction"] is None
    matrix = np.array(client.get("/api/atlas/digits/confusion").json()["matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 40
    cell = client.get("/api/atlas/digits/confusion/4/4").json()["indices"]
    assert len(cell) == matrix[4, 4] and all(atlas.labels()[i] == 4 for i in cell)
    project(client, "digits", "flatten", method="pca")
    coords = coords_of(client, "/api/atlas/digits/flatten/projection/pca/coords")
    answer = client.post("/api/atlas/digits/flatten/export?format=csv",
                         json={"indices": [1, 40], "method": "pca"})
    assert answer.headers["content-type"].startswith("text/csv")
    assert 'filename="digits-flatten-pca-selection.csv"' in answer.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["index"] for r in table] == ["1", "40"] and table[1]["path"] == atlas.sources()[40]
    assert float(table[0]["x"]) == pytest.approx(float(coords[1, 0]))
    records = client.post("/api/atlas/digits/flatten/export?format=json",
                          json={"indices": [3], "method": "pca"}).json()
    assert records[0]["y"] == pytest.approx(float(coords[3, 1])) and records[0]["label_name"] == "0"


def test_serving_a_page_never_reads_the_embeddings(client: TestClient,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    project(client, "digits", "flatten", method="pca")  # cached before the page opens

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a page request read the embeddings")

    for name in ("embeddings", "embedding_rows", "valid_embeddings"):
        monkeypatch.setattr(Atlas, name, refuse)
    for url in ("/api/atlas/digits/info", "/api/atlas/digits/columns/labels",
                "/api/atlas/digits/columns/predictions", "/api/atlas/digits/columns/confidence",
                "/api/atlas/digits/flatten/projection/pca/coords", "/api/atlas/digits/tiles/0.png",
                "/api/atlas/digits/thumbs/3.png", "/api/atlas/digits/search?q=5",
                "/api/atlas/digits/confusion"):
        assert client.get(url).status_code == 200, url
    job = client.post("/api/atlas/digits/flatten/projection", json={"method": "pca"}).json()
    assert job["status"] == "done"


BAD_REQUESTS = [
    ("GET", "/api/atlas/nope/info", None, 404, "no atlas 'nope'"),
    ("GET", "/atlas/nope/flatten", None, 404, "no atlas 'nope'"),
    ("GET", "/atlas/digits/fc", None, 404, "layer 'fc' is not in atlas 'digits'"),
    ("GET", "/atlas/digits/flatten?method=mds", None, 400, "use one of pca, tsne, umap"),
    ("GET", "/atlas/digits/flatten?color=rainbow", None, 400, "color=rainbow: choose from"),
    ("GET", "/atlas/digits/flatten?align_to=digits-b", None, 400, "write it as ATLAS:LAYER"),
    ("GET", "/atlas/digits/flatten?align_to=digits-b:block3", None, 404, "not in atlas 'digits-b'"),
    ("GET", "/api/atlas/digits/tiles/1.png", None, 404, "tile 1 is outside atlas 'digits' (0..0)"),
    ("GET", "/api/atlas/digits/tiles/-1.png", None, 404, "tile -1 is outside"),
    ("GET", "/api/atlas/digits/tiles/x.png", None, 422, "tile"),
    ("GET", "/api/atlas/digits/thumbs/41.png", None, 404, "index 41 is outside atlas 'digits' (0..40)"),
    ("GET", "/api/atlas/digits/columns/sources", None, 404, "no column 'sources'"),
    ("GET", "/api/atlas/digits/search?q=", None, 400, "search: give"),
    ("POST", "/api/atlas/digits/items", {"indices": [0, 41]}, 400, "index 41 is outside"),
    ("POST", "/api/atlas/digits/items", {"indices": ["0"]}, 400, "not an integer"),
    ("POST", "/api/atlas/digits/items", {"rows": [0]}, 422, "indices"),
    ("GET", "/api/atlas/digits/confusion/10/0", None, 400, "outside the confusion matrix"),
    ("POST", "/api/atlas/digits/flatten/projection", {"method": "mds"}, 400, "use one of pca, tsne, umap"),
    ("POST", "/api/atlas/digits/fc/projection", {"method": "pca"}, 404, "layer 'fc' is not in atlas"),
    ("POST", "/api/atlas/nope/flatten/projection", {"method": "pca"}, 404, "no atlas 'nope'"),
    ("POST", "/api/atlas/digits/flatten/projection", {"method": "pca", "align_to": "nope:flatten"}, 404,
     "no atlas 'nope'"),
    ("GET", "/api/atlas/digits/flatten/projection/mds/coords", None, 400, "use one of"),
    ("GET", "/api/atlas/digits/flatten/projection/umap/coords", None, 404, "not computed yet"),
    ("POST", "/api/atlas/digits/flatten/export?format=xml", {"indices": [0]}, 400, "use one of csv, json"),
    ("POST", "/api/atlas/digits/block3/export?format=csv", {"indices": [0], "method": "umap"}, 404,
     "not computed yet"),
]


@pytest.mark.parametrize(("verb", "url", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_clear_4xx(client: TestClient, verb: str, url: str, body: Any, status: int,
                                      message: str) -> None:
    answer = client.request(verb, url, json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert message in error and "\n" not in error and "Traceback" not in error


_AUDIT: dict[str, Any] = {"on": False, "paths": []}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _AUDIT["on"] and event in ("open", "sqlite3.connect", "os.listdir", "os.scandir") and args:
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)):
            _AUDIT["paths"].append(os.path.realpath(os.fsdecode(path)))


TRAVERSALS = [
    ("GET", "/api/atlas/../outside/info"),
    ("GET", "/api/atlas/%2e%2e/info"),
    ("GET", "/api/atlas/%2e%2e%2foutside/info"),
    ("GET", "/api/atlas/..%2Foutside/info"),
    ("GET", "/api/atlas/outside/info"),
    ("GET", "/api/atlas/digits%2F..%2F..%2Foutside/info"),
    ("GET", "/api/atlas/%2Fetc%2Fpasswd/info"),
    ("GET", "/api/atlas/digits/..%2F..%2Foutside%2Fembeddings%2Fflatten/projection/pca/coords"),
    ("GET", "/api/atlas/digits/%2e%2e/projection/pca/coords"),
    ("GET", "/api/atlas/digits/flatten/projection/..%2F..%2Fsecret.txt/coords"),
    ("GET", "/api/atlas/digits/flatten/projection/pca/coords?align_to=..%2Foutside:flatten"),
    ("GET", "/api/atlas/digits/flatten/projection/pca/coords?align_to=outside:flatten"),
    ("GET", "/api/atlas/digits/thumbs/..%2F..%2Fsecret.png"),
    ("GET", "/api/atlas/digits/tiles/%2e%2e%2f%2e%2e%2fsecret.png"),
    ("GET", "/api/atlas/digits/columns/..%2F..%2Fsecret.txt"),
    ("GET", "/api/atlas/%2e%2e%2foutside/search?q=3"),
    ("GET", "/api/atlas/%2e%2e%2foutside/confusion"),
    ("GET", "/atlas/%2e%2e/outside"),
    ("GET", "/atlas/digits/%2e%2e%2f%2e%2e%2fsecret.txt"),
    ("GET", "/atlas/digits/flatten?align_to=%2Fetc%2Fpasswd:x"),
    ("POST", "/api/atlas/digits/..%2Fembeddings/projection"),
    ("POST", "/api/atlas/%2e%2e%2foutside/flatten/projection"),
    ("POST", "/api/atlas/%2e%2e%2foutside/items"),
    ("POST", "/api/atlas/%2e%2e%2foutside/flatten/export?format=csv"),
]


def test_no_path_outside_the_configured_atlases_is_read(app: Any, root: Path) -> None:
    """Raw requests (no client-side path normalization) to a live server; every file the process
    opens meanwhile is recorded by an audit hook and must lie in a served atlas or the cache."""
    if not _AUDIT.get("installed"):
        sys.addaudithook(_audit)
        _AUDIT["installed"] = True
    running = start_in_thread(app)
    host, port = urlsplit(running.url).hostname, urlsplit(running.url).port
    body = json.dumps({"method": "pca", "indices": [0], "align_to": "../outside:flatten"})
    answers = []
    try:
        _AUDIT.update(on=True, paths=[])
        for verb, path in [*TRAVERSALS, ("GET", "/api/atlas/digits/thumbs/5.png")]:
            con = http.client.HTTPConnection(host, port, timeout=30)
            con.request(verb, path, body=body if verb == "POST" else None,
                        headers={"content-type": "application/json"})
            reply = con.getresponse()
            answers.append((verb, path, reply.status, reply.read()))
            con.close()
    finally:
        _AUDIT["on"] = False
        running.stop()
    for verb, path, status, content in answers[:-1]:
        assert 400 <= status < 500, (verb, path, status, content)
        assert SECRET.encode() not in content and b"root:" not in content
        message = json.loads(content)["error"]
        assert message and "\n" not in message, (path, message)
    assert answers[-1][2] == 200  # the hook saw the real request read the served thumbnails
    opened = set(_AUDIT["paths"])
    assert str((root / "served" / "digits" / "thumbnails.npy").resolve()) in opened
    allowed = [str((root / "served" / name).resolve()) for name in ("digits", "digits-b")]
    allowed.append(str((root / "cache").resolve()))
    under_root = [p for p in opened if p.startswith(str(root.resolve()))]
    strays = [p for p in under_root if not any(p == a or p.startswith(a + os.sep) for a in allowed)]
    assert not strays, strays
    assert not any(p.startswith("/etc/passwd") for p in opened)


