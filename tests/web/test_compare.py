"""Comparing two models: one image explained by both, two atlases of one dataset side by side."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.web.digits_atlases import DigitAtlases, make_digit_atlases


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitAtlases:
    return make_digit_atlases(tmp_path_factory.mktemp("compare"))


@pytest.fixture(scope="module")
def app(make_app: Callable[..., Any], digits: DigitAtlases) -> Any:
    return make_app(**digits.config())


def test_atlases_of_one_dataset_are_shown_side_by_side_aligned(client: TestClient) -> None:
    page = client.get("/compare/atlas", params={"a": "digits:block4", "b": "digits_b:block4",
                                                "method": "pca"})
    assert page.status_code == 200, page.text
    frames = re.findall(r'<iframe src="([^"]+)"', page.text)
    assert frames == ["/atlas/digits/block4?embed=1&amp;method=pca",
                      "/atlas/digits_b/block4?embed=1&amp;method=pca&amp;align_to=digits%3Ablock4"]


@pytest.mark.parametrize(("params", "status", "words"), [
    ({"a": "digits:block4", "b": "others:block4"}, 400, "different datasets"),
    ({"a": "digits:block4", "b": "nope:block4"}, 404, "nope"),
    ({"a": "digits:fc", "b": "digits_b:block4"}, 404, "fc"),
    ({"a": "digits", "b": "digits_b:block4"}, 400, "ATLAS:LAYER"),
    ({"a": "digits:block4", "b": "digits_b:block4", "method": "mds"}, 400, "method"),
])
def test_bad_atlas_pairs_get_a_clear_4xx(client: TestClient, params: dict, status: int,
                                         words: str) -> None:
    got = client.get("/compare/atlas", params=params)
    assert got.status_code == status and words in got.text and "Traceback" not in got.text
