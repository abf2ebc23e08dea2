"""Comparing two models: one image explained by both, two atlases of one dataset side by side."""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from convscope.model import Model
from convscope.tasks.explain import explain
from convscope.tasks.predict import predict
from convscope.web.images import resolve_image
from tests.web.polling import wait_job

SERVE_DIGITS = ("digits_cnn", "efficientnet_lite0")
"""The models this module's app serves, with the digit atlases (tests/web/conftest.py)."""


def test_atlases_of_one_dataset_are_shown_side_by_side_aligned(client: TestClient) -> None:
    page = client.get("/compare/atlas", params={"a": "digits:block4", "b": "digits_b:block4",
                                                "method": "pca"})
    assert page.status_code == 200, page.text
    frames = re.findall(r'<iframe src="([^"]+)"', page.text)
    assert frames == ["/atlas/digits/block4?embed=1&amp;method=pca",
                      "/atlas/digits_b/block4?embed=1&amp;method=pca&amp;align_to=digits%3Ablock4"]


def test_without_atlases_the_page_offers_every_atlas_layer(client: TestClient) -> None:
    page = client.get("/compare/atlas")
    assert page.status_code == 200 and "<iframe" not in page.text
    for name in ("a", "b"):
        options = re.search(rf'<select name="{name}">(.*?)</select>', page.text, re.S)
        assert options is not None
        assert re.findall(r"<option\s*>([^<]+)</option>", options.group(1)) == [
            "digits:block3", "digits:block4", "digits_b:block4", "others:block4"]


@pytest.mark.parametrize(("params", "status", "words"), [
    ({"a": "digits:block4", "b": "others:block4"}, 400, "different datasets"),
    ({"a": "digits:block4", "b": "nope:block4"}, 404, "nope"),
    ({"a": "digits:fc", "b": "digits_b:block4"}, 404, "fc"),
    ({"a": "digits", "b": "digits_b:block4"}, 400, "ATLAS:LAYER"),
    ({"a": "digits:block4", "b": "digits_b:block4", "method": "mds"}, 400, "method"),
    ({"a": "digits:block4"}, 400, "two atlas layers"),
])
def test_bad_atlas_pairs_get_a_clear_4xx(client: TestClient, params: dict, status: int,
                                         words: str) -> None:
    got = client.get("/compare/atlas", params=params)
    assert got.status_code == status and words in got.text and "Traceback" not in got.text


def test_one_image_is_explained_by_both_models_with_their_own_top_class(
        client: TestClient, app: Any, web_models: dict[str, Model]) -> None:
    ref = "folder:queries/q0.png"
    page = client.get("/compare", params={"image": ref, "method": "gradcam"})
    assert page.status_code == 200, page.text
    sides = re.findall(r'data-job="([^"]+)" data-model="([^"]+)"\s+data-predictions="([^"]+)"', page.text)
    assert [m for _, m, _ in sides] == ["digits_cnn", "efficientnet_lite0"]
    picture = resolve_image(app.state.cs, ref)
    for job_id, name, shown in sides:
        job = wait_job(client, job_id)
        assert job["status"] == "done", job
        model = web_models[name]
        top = predict(model, [picture], top=5)[0]
        assert job["data"]["target"] == top[0].index  # each model's own top class
        assert json.loads(html.unescape(shown)) == [p.as_dict() for p in top]
        alone = explain(model, [picture], "gradcam")
        got = np.load(io.BytesIO(client.get(job["files"]["map.npy"]).content))
        np.testing.assert_array_equal(got, alone.map_array(0))  # the map computed alone
        png = client.get(job["data"]["overlay"])
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    again = client.get("/compare", params={"image": ref, "method": "gradcam"})
    for job_id, _ in re.findall(r'data-job="([^"]+)" data-model="([^"]+)"', again.text):
        assert client.get(f"/api/jobs/{job_id}").json()["message"] == "cached"


def test_a_given_target_is_explained_by_both(client: TestClient) -> None:
    page = client.get("/compare", params={"image": "folder:queries/q0.png", "method": "gradcam",
                                          "target": "3"})
    assert page.status_code == 200, page.text
    for job_id in re.findall(r'data-job="([^"]+)"', page.text):
        assert wait_job(client, job_id)["data"]["target"] == 3


@pytest.mark.parametrize(("params", "status", "words"), [
    ({"image": "folder:queries/q0.png", "method": "magic"}, 400, "magic"),
    ({"image": "folder:queries/../../x.png"}, 403, ".."),
    ({"image": "sample:nothing"}, 404, "nothing"),
    ({"image": "folder:queries/q0.png", "target": "zebra-fish"}, 400, "zebra-fish"),
    ({"image": "folder:queries/q0.png", "a": "resnet"}, 404, "resnet"),
    ({"image": "folder:queries/q0.png", "a": "digits_cnn", "b": "digits_cnn"}, 400, "same model"),
])
def test_bad_compare_requests_get_a_clear_4xx(client: TestClient, params: dict, status: int,
                                              words: str) -> None:
    got = client.get("/compare", params=params, headers={"accept": "text/html"})
    assert got.status_code == status and words in got.text and "Traceback" not in got.text


def test_one_model_is_refused_with_what_to_do(make_app: Callable[..., Any]) -> None:
    with TestClient(make_app(models=("digits_cnn",)), base_url="http://127.0.0.1") as one:
        got = one.get("/compare", params={"image": "sample:cat"})
    assert got.status_code == 400 and "--model A --model B" in got.json()["error"]


def test_a_slow_method_streams_progress_and_can_be_cancelled(client: TestClient,
                                                             web_models: dict[str, Model]) -> None:
    page = client.get("/compare", params={"image": "folder:queries/q1.png", "method": "occlusion"})
    (small, _), (large, _) = re.findall(r'data-job="([^"]+)" data-model="([^"]+)"', page.text)
    done = wait_job(client, small)
    assert done["status"] == "done" and done["total"] > 1  # occlusion's own progress, not 0/1
    assert client.post(f"/api/jobs/{large}/cancel").status_code == 200
    assert wait_job(client, large)["status"] == "cancelled"
    lite0 = web_models["efficientnet_lite0"]
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in lite0.modules())
    assert not lite0.training and all(not p.requires_grad or p.grad is None for p in lite0.parameters())


@pytest.mark.parametrize("path, active", [("/", "/"), ("/layers/block3", "/"), ("/compare", "/compare"),
                                          ("/compare/atlas", "/compare/atlas"), ("/atlas", "/atlas")])
def test_the_compare_pages_are_in_the_navigation(client: TestClient, path: str, active: str) -> None:
    page = client.get(path, headers={"accept": "text/html"})
    assert page.status_code == 200, page.text
    nav = page.text[page.text.index('<header class="cs-nav">'):page.text.index("</header>")]
    assert '<a href="/compare">Compare models</a>' in nav or 'href="/compare" class="active"' in nav
    assert 'href="/compare/atlas"' in nav
    assert re.findall(r'<a href="([^"]+)" class="active"', nav) == [active]
    for href in re.findall(r'href="(/[^"]*)"', nav):
        assert client.get(href, headers={"accept": "text/html"}).status_code == 200, href
