"""The compare pages in Chromium: two models' maps of one image, two atlases' maps, side by side."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.web.digits_atlases import DigitAtlases
from tests.web.pictures import image_drawn

COLOURS = """img => { const c = document.createElement('canvas'); c.width = img.naturalWidth;
    c.height = img.naturalHeight; const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data; const seen = new Set();
    for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    return seen.size; }"""
"""How many colours an <img> holds once drawn (a heat map over an image has hundreds)."""


SERVE_DIGITS = ("digits_cnn", "efficientnet_lite0")
"""The models this module's app serves, with the digit atlases (tests/web/conftest.py)."""


def test_two_models_explain_one_image_side_by_side(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/compare?image=folder:queries/q0.png&method=gradcam")
    page.wait_for_function("""() => [...document.querySelectorAll('.cs-side img.cs-map')]
                              .every(i => !i.hidden && i.complete && i.naturalWidth > 0)""")
    assert image_drawn(page, ".cs-side img.cs-map")
    sides = page.locator(".cs-side")
    assert sides.count() == 2
    boxes = [sides.nth(i).locator("img.cs-map").bounding_box() for i in range(2)]
    assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"]  # side by side, left to right
    assert abs(boxes[0]["y"] - boxes[1]["y"]) < 5
    for i, model in enumerate(["digits_cnn", "efficientnet_lite0"]):
        side = sides.nth(i)
        assert side.locator("h2").inner_text() == model
        assert side.locator("img.cs-map").evaluate(COLOURS) > 50
        assert side.locator("table.cs-predictions tr.cs-explained").count() == 1  # its own top class
        assert side.locator("table.cs-predictions tr").count() == 6  # header + top 5
    assert not page.console_errors


def test_an_uploaded_image_is_compared_too(live_server: str, page: Any, digits: DigitAtlases) -> None:
    page.goto(f"{live_server}/compare?method=gradcam")
    page.locator("#cmp-upload").set_input_files(str(digits.images / "q2.png"))
    page.wait_for_function("() => location.search.includes('image=upload')")
    page.wait_for_function("""() => [...document.querySelectorAll('.cs-side img.cs-map')]
                              .every(i => !i.hidden && i.complete && i.naturalWidth > 0)""")
    assert image_drawn(page, ".cs-side img.cs-map") and "method=gradcam" in page.url
    page.locator("#cmp-upload").set_input_files(files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                        "buffer": b"not an image"}])
    page.locator("#cmp-upload-error:not([hidden])").wait_for()
    assert "notes.txt" in page.inner_text("#cmp-upload-error")


def map_frame(page: Any, atlas: str) -> Any:
    """The iframe's page that shows atlas ``atlas``, once its map is drawn."""
    frame = next(f for f in page.frames if f"/atlas/{atlas}/" in f.url)
    frame.wait_for_function("document.querySelector('#atlas-map').dataset.state === 'ready'",
                            timeout=60_000)
    return frame


def test_two_atlases_of_one_dataset_are_drawn_side_by_side_on_aligned_maps(
        live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/compare/atlas?a=digits:block4&b=digits_b:block4&method=pca")
    frames = page.locator(".cs-compare-maps iframe")
    assert frames.count() == 2
    left, right = frames.nth(0).bounding_box(), frames.nth(1).bounding_box()
    assert left["x"] + left["width"] <= right["x"] and abs(left["y"] - right["y"]) < 5
    a, b = map_frame(page, "digits"), map_frame(page, "digits_b")
    align = "document.querySelector('#atlas-map').dataset.alignTo"
    assert a.evaluate(align) == "" and b.evaluate(align) == "digits:block4"
    for frame in (a, b):
        assert frame.evaluate("!!document.querySelector('.cs-nav')") is False  # embedded: no nav
        url = frame.evaluate("document.querySelector('.map-points').toDataURL('image/png')")
        shown = frame.evaluate("""async url => { const img = new Image(); img.src = url; await img.decode();
            const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data; const seen = new Set();
            for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]);
            return seen.size; }""", url)
        assert shown > 3  # background and points of several classes
    # the same model and layer in both atlases: aligned, every image sits at the same place
    # (up to where each map is centred; the fit itself is the atlas API's, tested with it)
    n = a.evaluate("csMap.n")
    where = "n => Array.from({length: n}, (_, i) => csMap.pointOnScreen(i))"
    xy_a, xy_b = np.array(a.evaluate(where, n)), np.array(b.evaluate(where, n))
    assert n == 40 and xy_a.std(0).min() > 20  # spread over the map, not one heap
    assert np.abs((xy_a - xy_a.mean(0)) - (xy_b - xy_b.mean(0))).max() < 2
    assert not page.console_errors
