"""The per-layer top-patches page: one lazy tile per channel, each the channel's real top patches."""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from convscope.data.atlas import Atlas
from convscope.model import load_model
from convscope.tasks.atlas import top_patches
from convscope.web import patches_page
from convscope.web.patches_page import TILE_PX, patches_png
from tests.web.digits_atlases import DigitAtlases

SERVE_DIGITS = ("digits_cnn",)
"""The models this module's app serves, with the digit atlases (tests/web/conftest.py)."""


def test_the_page_has_a_lazy_tile_and_a_unit_link_per_channel(client: TestClient) -> None:
    page = client.get("/atlas/digits/block3/patches")
    assert page.status_code == 200, page.text
    tiles = re.findall(r'data-src="/api/atlas/digits/block3/patches/(\d+)\.png\?k=4"', page.text)
    assert tiles == [str(c) for c in range(64)]
    assert ' src="/api/atlas' not in page.text  # nothing loads before it scrolls into view
    assert all(f'href="/layers/block3/{c}?model=digits_cnn"' in page.text for c in (0, 63))


def test_a_tile_shows_the_channel_top_patches_and_is_cached(client: TestClient, digits: DigitAtlases,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    got = client.get("/api/atlas/digits/block4/patches/5.png", params={"k": 3})
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    tile = np.asarray(Image.open(io.BytesIO(got.content)).convert("L"), dtype=np.float64)
    atlas, model = Atlas.open(digits.atlas("digits")), load_model("digits_cnn")
    patches = top_patches(atlas, model, "block4", 5, 3)
    assert len(patches) == 3 and tile.shape[1] >= 3 * TILE_PX  # three patches in one row
    assert tile.std() > 30  # digit strokes on black, not a blank tile
    assert got.content == patches_png(model, atlas, "block4", 5, 3)  # what `convscope top` crops
    def not_again(*args: Any) -> bytes:
        raise AssertionError("a cached tile was drawn again")

    monkeypatch.setattr(patches_page, "patches_png", not_again)
    again = client.get("/api/atlas/digits/block4/patches/5.png", params={"k": 3})
    assert again.status_code == 200 and again.content == got.content


@pytest.mark.parametrize(("url", "status", "words"), [
    ("/atlas/nope/block4/patches", 404, "nope"),
    ("/atlas/digits/fc/patches", 404, "fc"),
    ("/api/atlas/digits/block4/patches/64.png", 400, "channel=64"),
    ("/api/atlas/digits/block4/patches/x.png", 400, "channel"),
    ("/api/atlas/digits/block4/patches/1.png?k=0", 400, "k=0"),
])
def test_bad_parameters_get_a_clear_4xx(client: TestClient, url: str, status: int, words: str) -> None:
    got = client.get(url)
    assert got.status_code == status, got.text
    text = got.json()["error"] if url.startswith("/api/") else got.text
    assert words in text and "Traceback" not in text
