"""The top-patches page in Chromium: tiles load as they scroll into view and show real pictures."""

from __future__ import annotations

from typing import Any

from tests.web.pictures import image_drawn

VARIED = """img => { const c = document.createElement('canvas'); c.width = img.naturalWidth;
    c.height = img.naturalHeight; const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data; const seen = new Set();
    for (let i = 0; i < d.length; i += 4) seen.add(d[i]); return seen.size; }"""
"""How many grey levels an <img> holds once drawn (a blank tile has one or two)."""


SERVE_DIGITS = ("digits_cnn",)
"""The models this module's app serves, with the digit atlases (tests/web/conftest.py)."""


def test_the_grid_fills_lazily_as_it_scrolls(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/atlas/digits/block3/patches")
    first = '#patches a[data-channel="0"] img'
    last = '#patches a[data-channel="63"] img'
    page.wait_for_function(f"() => document.querySelector('{first}').naturalWidth > 0")
    assert image_drawn(page, first)
    assert page.eval_on_selector(first, VARIED) > 20  # digit strokes, not a blank tile
    # far below the fold: not requested yet
    assert page.eval_on_selector(last, "img => img.hasAttribute('data-src') && !img.src")
    requested = page.eval_on_selector_all("#patches img", "els => els.filter(e => e.src).length")
    assert 0 < requested < 64
    page.locator(last).scroll_into_view_if_needed()
    page.wait_for_function(f"() => document.querySelector('{last}').naturalWidth > 0")
    assert image_drawn(page, last) and page.eval_on_selector(last, VARIED) > 20
    href = page.get_attribute('#patches a[data-channel="63"]', "href")
    assert href == "/layers/block3/63?model=digits_cnn"
    assert not page.console_errors
