"""The whole path a user walks, in Chromium: model page -> layer -> unit -> image explainer with
three methods -> export -> a long job cancelled. Each step checks that its pictures are drawn.

The pages have their own detailed tests; this one proves they link into each other."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from tests.model_safety import assert_unharmed, snapshot
from tests.web.pictures import canvas_drawn

MAPS = "#ex-maps .ex-map canvas.ex-overlay"


def test_model_layer_unit_explainer_export_and_a_cancelled_job(app: Any, live_server: str, page: Any) -> None:
    lite0 = app.state.cs.models["efficientnet_lite0"].model
    before = snapshot(lite0)
    # model page (digits_cnn, the default): search, then open a layer from the tree
    page.goto(f"{live_server}/")
    page.fill("#layer-search", "block4")
    page.click('#layer-tree tr[data-name="block4"] a')
    page.wait_for_url("**/layers/block4**")
    # layer page: feature maps of the current image drawn; open the first unit
    page.wait_for_function("""() => [...document.querySelectorAll('#featuremaps img')].slice(0, 8)
                              .every(i => i.complete && i.naturalWidth > 0)""")
    page.locator("#featuremaps .fmap a").first.click()
    page.wait_for_url("**/layers/block4/*")
    # unit page: the activation mask and the classes the unit supports
    page.wait_for_function("() => { const i = document.querySelector('#mask'); "
                           "return i.complete && i.naturalWidth > 0; }")
    page.wait_for_selector('#classes[data-state="done"]', timeout=30_000)
    # the image explainer from the unit page's image
    page.click("text=(explain this image)")
    page.wait_for_url("**/explain?image=**")
    page.locator("#ex-classes button").first.wait_for()
    for method in ("gradcam", "saliency", "occlusion"):
        page.locator(f'.ex-method[data-method="{method}"] input.ex-use').check()
    page.locator('.ex-method[data-method="occlusion"] summary').click()
    page.fill('input[name="occlusion.window"]', "7")
    page.fill('input[name="occlusion.stride"]', "7")
    page.locator("#ex-classes button").first.click()
    page.wait_for_function(f"""() => {{ const imgs = [...document.querySelectorAll('{MAPS}')];
        return imgs.length === 3 && imgs.every(i => !i.hidden && i.dataset.drawn); }}""")
    assert all(canvas_drawn(page, f"{MAPS} >> nth={i}") for i in range(page.locator(MAPS).count()))
    # export: the PNG and the .npy of every map
    cards = page.locator("#ex-maps .ex-map")
    for i in range(3):
        png = page.request.get(live_server + cards.nth(i).locator("a.export-png").get_attribute("href"))
        raw = page.request.get(live_server + cards.nth(i).locator("a.export-npy").get_attribute("href"))
        assert png.status == 200 and png.body().startswith(b"\x89PNG")
        values = np.load(io.BytesIO(raw.body()))
        assert values.shape == (28, 28) and np.isfinite(values).all() and np.abs(values).max() > 0
    # a long job (fine occlusion of EfficientNet-Lite0) streams progress and is cancelled
    page.goto(f"{live_server}/explain?image=sample:cat&model=efficientnet_lite0&methods=occlusion"
              "&occlusion.window=16&occlusion.stride=4&occlusion.batch_size=8&target=285")
    page.wait_for_function("""() => { const s = document.querySelector(
        '#ex-maps .ex-map[data-method="occlusion"] .cs-job-status');
        return s && /running \\d+\\/\\d+/.test(s.textContent); }""")
    page.locator('#ex-maps .ex-map[data-method="occlusion"] button.cs-cancel').click()
    page.wait_for_function("""() => document.querySelector(
        '#ex-maps .ex-map[data-method="occlusion"] .cs-job').dataset.status === 'cancelled'""")
    page.goto(f"{live_server}/jobs")
    assert "cancelled" in page.locator("#jobs").inner_text()
    assert_unharmed(lite0, before)
    assert not [e for e in page.console_errors if "status of 4" not in e]
