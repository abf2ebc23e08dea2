"""The whole map path on a real scanned atlas, through the real routes of ``convscope serve``.

A few hundred MNIST-5k digits (written as PNGs in one folder per class, so sources are real file
paths) are scanned with digits_cnn by ``tasks.scan_dataset``; the app serves that atlas. The walk:
open the map, hover (the thumbnail is drawn), lasso-select (the grid's counts are the atlas's),
open a point's neighbours, open the explainer from it, then run an adversarial job on that digit in
the lab and cancel another.

Besides this page's client it exercises other modules' routes: the atlas API and the map route
(``web/atlas_pages.py``), the neighbours API and ``static/neighbors.js`` (``web/neighbors.py``),
and the explainer page (``web/explainer.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from convscope.data.atlas import Atlas
from convscope.data.datasets import load_mnist5k
from convscope.model import Model
from convscope.tasks.scan import scan_dataset
from convscope.web.server import start_in_thread
from tests.web.browser.map_page import (
    BG,
    assert_shows,
    canvas_pixels,
    drag,
    element_pixels,
    isolated_point,
    loaded,
    page_xy,
    settle,
)

EVERY = 16   # every 16th of the 5,000 digits: 313 images, all ten classes


@pytest.fixture(scope="module")
def scanned(web_models: dict[str, Model], tmp_path_factory: pytest.TempPathFactory) -> Atlas:
    images, labels = load_mnist5k()
    folder = tmp_path_factory.mktemp("digits")
    for i in range(0, len(labels), EVERY):
        sub = folder / str(int(labels[i]))
        sub.mkdir(exist_ok=True)
        pixels = (images[i, 0].numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(sub / f"digit_{i:04d}.png")
    atlas = tmp_path_factory.mktemp("atlases") / "digits"
    return scan_dataset(web_models["digits_cnn"], folder, atlas)


@pytest.fixture(scope="module")
def server(make_app: Any, scanned: Atlas) -> Iterator[str]:
    running = start_in_thread(make_app(models=("digits_cnn",), atlases=[scanned.path]))
    yield running.url.rstrip("/")
    running.stop()


def test_walk_the_map_of_a_scanned_atlas(page: Any, server: str, scanned: Atlas) -> None:
    layer = scanned.layers[0]
    labels, predictions = scanned.labels(), scanned.predictions()
    names = scanned.class_names
    response = page.goto(f"{server}/atlas/digits/{layer}?method=pca")
    assert response.status == 200, f"the map route (web/atlas_pages.py) answered {response.status}"
    page.wait_for_selector("#atlas-map[data-state=ready]", timeout=30_000)
    settle(page)
    assert page.evaluate("csMap.n") == len(scanned) == len(labels)
    drawn = np.abs(canvas_pixels(page).astype(int) - BG).sum(-1) > 0
    assert drawn.sum() > 5 * len(scanned)

    # hover: the thumbnail (cut from its tile) is drawn, with the atlas's label and prediction
    i = isolated_point(page, len(scanned))
    page.mouse.move(*page_xy(page, i))
    page.wait_for_function(loaded(".map-tip img"))
    tip = page.inner_text(".map-tip")
    assert f"label {names[labels[i]]}" in tip and f"predicted {names[predictions[i]]}" in tip
    assert_shows(element_pixels(page, ".map-tip .thumb-crop"), scanned.thumbnails([i])[0])
    file_name = Path(scanned.sources()[i]).name
    page.wait_for_function(f"document.querySelector('.tip-file').textContent.includes('{file_name}')")

    # lasso around the middle of the map: the grid shows the selection, the counts are the atlas's
    box = page.locator(".map-overlay").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.click("button[data-tool=lasso]")
    drag(page, [(cx + 160 * math.cos(t), cy + 120 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 36)])
    page.wait_for_selector(".selection-grid figure")
    page.wait_for_function(loaded(".sel-item img"))
    selected = np.array(page.evaluate("Array.from(csMap.selection)"))
    assert 0 < len(selected) == int(page.get_attribute("#atlas-map", "data-selected"))
    shown = page.eval_on_selector_all("table.counts[data-column=label] tbody tr",
                                      "rows => rows.map(r => [+r.dataset.class, +r.cells[1].textContent])")
    keys, counts = np.unique(labels[selected], return_counts=True)
    assert dict(shown) == dict(zip(keys.tolist(), counts.tolist()))
    assert page.locator(".sel-item").count() == min(len(selected), 240)

    # click a point: its neighbours (helper nbrs' panel) show loaded thumbnails
    page.click("button[data-tool=pan]")
    page.mouse.click(*page_xy(page, i))
    page.wait_for_selector(".map-point:not([hidden])")
    page.wait_for_function(loaded(".neighbors-panel img"), timeout=30_000)
    assert "cs-error" not in (page.get_attribute(".neighbors-panel", "class") or "")

    # the explainer opens on that image
    with page.expect_navigation() as nav:
        page.click(".explain-link")
    assert nav.value.status == 200
    assert page.url.endswith(f"/explain?image=atlas%3Adigits%2F{i}&model=digits_cnn")
    page.wait_for_function(loaded("#ex-image"))   # the explainer's picture of the image (explain.html)

    # the lab on that digit: an adversarial job runs to its end; a second one is cancelled
    page.goto(f"{server}/lab?kind=adversarial&image=atlas:digits/{i}&eps=0.3&steps=60&early_stop=0"
              f"&target={(int(labels[i]) + 1) % 10}")
    page.click("#lab-run")
    page.wait_for_function("() => document.querySelector('#lab-jobs .cs-job')?.dataset.status === 'done'",
                           timeout=60_000)
    page.wait_for_function(loaded("#lab-result figure img"))
    assert page.locator("#lab-result figure img").count() == 3
    assert "saved 8-bit PNG" in page.locator("#lab-result .verdict").inner_text()
    page.fill("input[name=steps]", "100000")
    page.click("#lab-run")
    page.wait_for_function("() => document.querySelectorAll('#lab-jobs .cs-job').length === 2")
    page.wait_for_function("""() => /running [1-9]/.test(
        document.querySelector('#lab-jobs .cs-job .cs-job-status').textContent)""", timeout=60_000)
    page.locator("#lab-jobs .cs-job").first.locator("button.cs-cancel").click()
    page.wait_for_function("() => document.querySelector('#lab-jobs .cs-job').dataset.status === 'cancelled'",
                           timeout=60_000)
    assert page.console_errors == []
