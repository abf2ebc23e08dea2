"""Links out of an atlas open its images with the model that made the atlas, not the server's
first model: served EfficientNet-Lite0 first and digits_cnn second, an MNIST atlas point's
"explain" must be explained by digits_cnn (EfficientNet called a digit an "analog clock")."""

from __future__ import annotations

from typing import Any

SERVE_DIGITS = ("efficientnet_lite0", "digits_cnn")
"""The models this module's app serves, with the digit atlases (tests/web/conftest.py)."""


def test_a_map_point_is_explained_by_the_atlas_model(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/atlas/digits/block4?point=7")
    link = page.locator(".map-point a.explain-link")
    link.wait_for()
    assert link.get_attribute("href") == "/explain?image=atlas%3Adigits%2F7&model=digits_cnn"
    page.locator(".neighbors-panel .cs-neighbor").first.wait_for()
    hrefs = page.eval_on_selector_all(".neighbors-panel a", "links => links.map(a => a.getAttribute('href'))")
    assert hrefs and all(h.endswith("&model=digits_cnn") for h in hrefs), hrefs
    link.click()
    page.wait_for_url("**/explain?**")
    assert page.input_value("#ex-model") == "digits_cnn"
    page.locator("#ex-classes button").first.wait_for()
    top = page.locator("#ex-classes button").first.inner_text()
    assert top.split(". ", 1)[1].split()[0] in {str(d) for d in range(10)}, top  # a digit class


def test_a_neighbour_page_links_with_the_atlas_model(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/atlas/digits/block4/neighbors?index=3&k=4")
    page.wait_for_function("() => document.querySelectorAll('#nb-panel .cs-neighbor').length === 4")
    hrefs = page.eval_on_selector_all("#nb-panel a", "links => links.map(a => a.getAttribute('href'))")
    assert len(hrefs) == 5 and all(h.endswith("&model=digits_cnn") for h in hrefs), hrefs
