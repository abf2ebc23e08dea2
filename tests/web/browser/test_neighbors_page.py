"""The neighbours panel in Chromium: by index, by a chosen image and by an upload, as the API says."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.web.digits_atlases import DigitAtlases
from tests.web.pictures import image_drawn

SHOWN = """() => [...document.querySelectorAll('#nb-panel .cs-neighbor')].map(f => [
    Number(f.dataset.index), f.querySelector('.cs-distance').textContent])"""


SERVE_DIGITS = ("digits_cnn",)
"""The models this module's app serves, with the digit atlases (tests/web/conftest.py)."""


def expected(client: TestClient, **query: Any) -> list[list[Any]]:
    rows = client.get("/api/atlas/digits/block4/neighbors", params=query).json()["neighbors"]
    return [[r["index"], f"{r['distance']:.4f}"] for r in rows]


def url_has(page: Any, text: str) -> None:
    page.wait_for_function(f"() => location.search.includes({text!r})")


def wait_for_panel(page: Any, count: int) -> None:
    page.wait_for_function(f"() => document.querySelectorAll('#nb-panel .cs-neighbor').length === {count}")


def test_a_point_s_neighbours_with_thumbnails_labels_and_explain_links(
        live_server: str, page: Any, client: TestClient) -> None:
    page.goto(f"{live_server}/atlas/digits/block4/neighbors?index=7&k=6")
    wait_for_panel(page, 6)
    assert page.evaluate(SHOWN) == expected(client, index=7, k=6)
    first = page.locator("#nb-panel .cs-neighbor").first
    index = first.get_attribute("data-index")
    assert first.locator("a.cs-explain").get_attribute("href") == (
        f"/explain?image=atlas%3Adigits%2F{index}&model=digits_cnn")
    assert "\u2192" in first.locator(".cs-label").inner_text()  # label -> prediction
    page.wait_for_function("""() => [...document.querySelectorAll('#nb-panel img')]
                              .every(i => i.complete && i.naturalWidth > 0)""")
    assert image_drawn(page, "#nb-panel .cs-neighbor img") and image_drawn(page, "#nb-panel img.cs-query")
    # clicking a neighbour asks for its own neighbours (and the address follows)
    first.locator("img").click()
    url_has(page, f"index={index}")
    assert "k=6" in page.url and "metric=cosine" in page.url
    wait_for_panel(page, 6)
    assert page.evaluate(SHOWN) == expected(client, index=int(index), k=6)
    assert not page.console_errors


def test_a_chosen_image_and_an_upload(live_server: str, page: Any, client: TestClient,
                                      digits: DigitAtlases) -> None:
    page.goto(f"{live_server}/atlas/digits/block4/neighbors?k=5&metric=l2")
    page.locator("#nb-query select").select_option("folder:queries/q1.png")
    wait_for_panel(page, 5)
    assert page.evaluate(SHOWN) == expected(client, image="folder:queries/q1.png", k=5, metric="l2")
    assert "image=folder%3Aqueries%2Fq1.png" in page.url
    page.locator("#nb-query input[type=file]").set_input_files(str(digits.images / "q2.png"))
    url_has(page, "image=upload")
    wait_for_panel(page, 5)
    ref = page.evaluate("() => new URLSearchParams(location.search).get('image')")
    assert page.evaluate(SHOWN) == expected(client, image=ref, k=5, metric="l2")
    page.locator("#nb-options select").select_option("cosine")
    url_has(page, "metric=cosine")
    wait_for_panel(page, 5)
    assert page.evaluate(SHOWN) == expected(client, image=ref, k=5, metric="cosine")
    assert not page.console_errors


def test_a_bad_query_shows_the_server_s_message(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/atlas/digits/block4/neighbors?index=4000")
    page.locator("#nb-panel.cs-error").wait_for()
    assert "index=4000: must be >= 0 and <= 39" in page.locator("#nb-panel").inner_text()
