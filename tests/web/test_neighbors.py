"""The neighbours API: the same answer as ``convscope neighbors --json``, and clear 4xx errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from convscope.data.atlas import Atlas
from convscope.web.images import save_upload
from tests.cli.runner import run
from tests.web.digits_atlases import DigitAtlases

URL = "/api/atlas/digits/{layer}/neighbors"


SERVE_DIGITS = ("digits_cnn",)
"""The models this module's app serves, with the digit atlases (tests/web/conftest.py)."""


def cli_neighbors(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code, out, err = run(capsys, "neighbors", *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def pairs(rows: list[dict]) -> list[tuple[int, float, str]]:
    return [(r["index"], r["distance"], r["source"]) for r in rows]


def brute_force(embeddings: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """Every distance from ``q`` in float64, written out from the definitions."""
    if metric == "cosine":
        return 1 - embeddings @ q / (np.linalg.norm(embeddings, axis=1) * np.linalg.norm(q))
    return np.linalg.norm(embeddings - q, axis=1)


@pytest.mark.parametrize(("layer", "index", "k", "metric"),
                         [("block4", 7, 6, "cosine"), ("block3", 0, 10, "l2"), ("block4", 39, 39, "l2")])
def test_index_query_is_the_cli_answer(capsys: pytest.CaptureFixture[str], client: TestClient,
                                       digits: DigitAtlases, layer: str, index: int, k: int,
                                       metric: str) -> None:
    got = client.get(URL.format(layer=layer), params={"index": index, "k": k, "metric": metric})
    assert got.status_code == 200, got.text
    web = got.json()["neighbors"]
    cli = cli_neighbors(capsys, "--atlas", str(digits.atlas("digits")), "--layer", layer,
                        "--index", str(index), "--k", str(k), "--metric", metric)["neighbors"]
    assert pairs(web) == pairs(cli) and len(web) == min(k, 39)
    assert [r["label_name"] for r in web] == [r["label"] for r in cli]
    # and the answer is right: the k smallest true distances, the query itself left out
    emb = Atlas.open(digits.atlas("digits")).embeddings(layer).astype(np.float64)
    true = brute_force(emb, emb[index], metric)
    true[index] = np.inf
    np.testing.assert_allclose([r["distance"] for r in web], np.sort(true)[:len(web)], atol=1e-5)
    assert index not in [r["index"] for r in web]
    assert all(r["label_name"] == Path(r["source"]).parent.name for r in web)  # class subfolders
    assert all(r["prediction"] is not None and r["label"] == int(r["label_name"]) for r in web)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_chosen_image_query_is_the_cli_answer(capsys: pytest.CaptureFixture[str], client: TestClient,
                                              digits: DigitAtlases, metric: str) -> None:
    got = client.get(URL.format(layer="block4"),
                     params={"image": "folder:queries/q1.png", "k": 8, "metric": metric})
    assert got.status_code == 200, got.text
    cli = cli_neighbors(capsys, str(digits.images / "q1.png"), "--atlas", str(digits.atlas("digits")),
                        "--layer", "block4", "--k", "8", "--metric", metric)
    assert pairs(got.json()["neighbors"]) == pairs(cli["neighbors"])
    assert got.json()["query"] == {"image": "folder:queries/q1.png"}


def test_uploaded_image_query_is_the_cli_answer(capsys: pytest.CaptureFixture[str],
                                                app: Any, client: TestClient,
                                                digits: DigitAtlases) -> None:
    path = digits.images / "q2.png"
    ref = save_upload(app.state.cs, path.read_bytes(), "q2.png")
    got = client.get(URL.format(layer="block3"), params={"image": ref, "k": 5})
    assert got.status_code == 200, got.text
    cli = cli_neighbors(capsys, str(path), "--atlas", str(digits.atlas("digits")), "--layer", "block3",
                        "--k", "5")
    assert pairs(got.json()["neighbors"]) == pairs(cli["neighbors"])


@pytest.mark.parametrize(("url", "params", "status", "words"), [
    ("/api/atlas/nope/block4/neighbors", {"index": 1}, 404, "nope"),
    ("/api/atlas/..%2F..%2Fetc/block4/neighbors", {"index": 1}, 404, "no page"),
    ("/api/atlas/%2Ftmp/block4/neighbors", {"index": 1}, 404, "no page"),
    ("/api/atlas/digits/fc/neighbors", {"index": 1}, 404, "fc"),
    ("/api/atlas/digits/block4/neighbors", {"index": 40}, 400, "index=40"),
    ("/api/atlas/digits/block4/neighbors", {"index": -1}, 400, "index=-1"),
    ("/api/atlas/digits/block4/neighbors", {"index": "seven"}, 400, "index"),
    ("/api/atlas/digits/block4/neighbors", {"index": 1, "k": 0}, 400, "k=0"),
    ("/api/atlas/digits/block4/neighbors", {"index": 1, "k": "many"}, 400, "k="),
    ("/api/atlas/digits/block4/neighbors", {"index": 1, "metric": "cityblock"}, 400, "metric"),
    ("/api/atlas/digits/block4/neighbors", {}, 400, "index=I"),
    ("/api/atlas/digits/block4/neighbors", {"index": 1, "image": "sample:cat"}, 400, "one of them"),
    ("/api/atlas/digits/block4/neighbors", {"image": "folder:queries/../../../etc/passwd"}, None, ""),
])
def test_bad_queries_get_a_clear_4xx(client: TestClient, url: str, params: dict,
                                     status: int | None, words: str) -> None:
    got = client.get(url, params=params)
    assert (400 <= got.status_code < 500) if status is None else got.status_code == status, got.text
    message = got.json()["error"]
    assert words in message and "\n" not in message and "Traceback" not in message


def test_the_neighbours_page_loads_the_panel_script(client: TestClient) -> None:
    page = client.get("/atlas/digits/block4/neighbors", params={"k": 6, "metric": "l2"})
    assert page.status_code == 200, page.text
    assert '<script src="/static/neighbors.js"></script>' in page.text
    assert 'value="6"' in page.text and "<option selected>l2</option>" in page.text
    script = client.get("/static/neighbors.js")
    assert script.status_code == 200 and "window.csNeighbors = {show, queryForm}" in script.text


@pytest.mark.parametrize(("url", "status", "words"), [
    ("/atlas/nope/block4/neighbors", 404, "nope"),
    ("/atlas/digits/fc/neighbors", 404, "fc"),
    ("/atlas/digits/block4/neighbors?k=0", 400, "k=0"),
    ("/atlas/digits/block4/neighbors?metric=dot", 400, "metric"),
])
def test_the_neighbours_page_refuses_bad_parameters(client: TestClient, url: str, status: int,
                                                    words: str) -> None:
    got = client.get(url, headers={"accept": "text/html"})
    assert got.status_code == status and words in got.text and "Traceback" not in got.text


def test_an_image_query_needs_the_atlas_model_served(make_app: Callable[..., Any],
                                                     digits: DigitAtlases) -> None:
    with TestClient(make_app(models=("efficientnet_lite0",), **digits.config()),
                    base_url="http://127.0.0.1") as other:
        by_image = other.get(URL.format(layer="block4"), params={"image": "folder:queries/q0.png"})
        by_index = other.get(URL.format(layer="block4"), params={"index": 3, "k": 2})
    assert by_image.status_code == 400 and "--model digits_cnn" in by_image.json()["error"]
    assert by_index.status_code == 200 and len(by_index.json()["neighbors"]) == 2  # stored embeddings
    # the atlas's model is not served: its class names are unknown, its indices are not
    assert all(r["prediction_name"] is None and r["prediction"] >= 0 for r in by_index.json()["neighbors"])


def test_answers_name_the_served_model_that_made_the_atlas(client: TestClient) -> None:
    """The pages link an atlas's images to the explainer with this model (not the server's first)."""
    assert client.get("/api/atlas/digits/info").json()["served_model"] == "digits_cnn"
    answer = client.get("/api/atlas/digits/block4/neighbors", params={"index": 3, "k": 2}).json()
    assert answer["model"] == "digits_cnn"
