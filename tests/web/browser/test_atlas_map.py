"""The dataset map page (templates/atlas_map.html, static/map.js) in headless Chromium.

Most tests drive the page against :mod:`tests.web.browser.fake_atlas`, a stand-in for the atlas
API made from synthetic arrays, so every expectation (which points a lasso holds, the counts, the
confusion matrix, a thumbnail's pixels) is computed here from those arrays, not read back from
the page. Pictures are checked by their pixels: the canvas is read back and must show the class
colours; thumbnails are compared with the thumbnails the fake made.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from convscope.web.server import start_in_thread
from tests.web.browser.fake_atlas import PALETTE, FakeAtlas, fake_router, make_fake_atlas
from tests.web.browser.map_page import (
    BG,
    assert_shows,
    canvas_pixels,
    colour_counts,
    drag,
    element_pixels,
    inside,
    isolated_point,
    loaded,
    page_xy,
    read_counts,
    settle,
)

SMALL, BIG, GAPS = "small", "big", "gaps"
LAYER = "features.4"
ZOOM_AT = "c => { const s = csMap.toScreen(c[0], c[1]); csMap.zoomAt(s[0], s[1], 12); }"


@pytest.fixture(scope="module")
def atlases() -> dict[str, FakeAtlas]:
    return {SMALL: make_fake_atlas(2000, seed=1), BIG: make_fake_atlas(100_000, seed=2),
            GAPS: make_fake_atlas(500, seed=3, skipped=7)}


@pytest.fixture(scope="module")
def fake(atlases: dict[str, FakeAtlas], make_app: Any) -> Iterator[tuple[str, Any]]:
    """The app (one small model, for its job worker and pages) with the fake atlas routes first."""
    app = make_app(models=("digits_cnn",))
    router = fake_router(atlases)
    app.router.routes[:0] = router.routes
    running = start_in_thread(app)
    yield running.url.rstrip("/"), router
    running.stop()


def open_map(page: Any, base: str, atlas: str = SMALL, query: str = "") -> None:
    page.goto(f"{base}/atlas/{atlas}/{LAYER}{query}")
    page.wait_for_selector("#atlas-map[data-state=ready]", timeout=20_000)
    settle(page)


# ---- drawing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("renderer", ["webgl", "canvas"])
def test_every_point_is_drawn_in_its_class_colour(page: Any, fake: Any, atlases: Any, renderer: str) -> None:
    base, _ = fake
    open_map(page, base, query=f"?renderer={renderer}")
    assert page.get_attribute("#atlas-map", "data-renderer") == renderer
    assert page.evaluate("csMap.n") == atlases[SMALL].n
    pixels = canvas_pixels(page)
    counts = colour_counts(pixels, PALETTE)
    assert (counts > 200).all(), counts  # each of the ten classes is on the canvas
    drawn = (np.abs(pixels.astype(int) - BG).sum(-1) > 0).mean()
    assert 0.005 < drawn < 0.6
    # a class clicked in the legend is highlighted
    page.click(".map-legend .legend-row[data-class='3']")
    assert page.get_attribute("#atlas-map", "data-highlighted") == str((atlases[SMALL].labels == 3).sum())
    page.click(".map-highlight button")
    # colour by correct/wrong: the fake mispredicts ~10%, so red is on the canvas but much less than green
    page.select_option("select[name=color]", "correct")
    settle(page)
    assert "color=correct" in page.url
    green, red = colour_counts(canvas_pixels(page), np.array([[44, 160, 44], [214, 39, 40]]))
    assert red > 50 and green > 4 * red
    legend = page.inner_text(".map-legend")
    a = atlases[SMALL]
    assert f"correct\n{(a.labels == a.predictions).sum():,}" in legend
    assert f"wrong\n{(a.labels != a.predictions).sum():,}" in legend


def test_auto_picks_a_renderer_that_draws(page: Any, fake: Any) -> None:
    base, _ = fake
    open_map(page, base, query="?color=confidence")
    used = page.get_attribute("#atlas-map", "data-renderer")
    gl_name = page.evaluate("""(() => { const g = document.createElement('canvas').getContext('webgl');
        if (!g) return ''; const e = g.getExtension('WEBGL_debug_renderer_info');
        return String(g.getParameter(e ? e.UNMASKED_RENDERER_WEBGL : g.RENDERER)); })()""")
    software = any(w in gl_name.lower() for w in ("swiftshader", "llvmpipe", "software"))
    assert used == ("canvas" if software or not gl_name else "webgl"), gl_name
    assert page.input_value("select[name=color]") == "confidence"
    assert (np.abs(canvas_pixels(page).astype(int) - BG).sum(-1) > 0).mean() > 0.005


@pytest.mark.timing
@pytest.mark.parametrize("renderer", ["auto", "webgl"])
def test_100k_points_open_and_pan_zoom_quickly(page: Any, fake: Any, atlases: Any, renderer: str) -> None:
    base, _ = fake
    open_map(page, base, BIG, f"?renderer={renderer}")   # the first time, the projection job runs
    t0 = time.perf_counter()
    open_map(page, base, BIG, f"?renderer={renderer}")   # once cached: the issue asks for < 3 s
    opened = time.perf_counter() - t0
    assert page.evaluate("csMap.n") == 100_000
    assert colour_counts(canvas_pixels(page), PALETTE).min() > 500
    assert opened < 3, opened
    box = page.locator(".map-overlay").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    frames = page.evaluate("csMap.frames")
    page.evaluate("csMap.frameTimes = []")
    t0 = time.perf_counter()
    for k in range(8):   # zoom in towards a cluster, pan, zoom out again
        page.mouse.move(cx + 150, cy)
        page.mouse.wheel(0, -240 if k < 4 else 240)
        drag(page, [(cx, cy), (cx + 40, cy + 25), (cx + 80, cy + 50)])
    settle(page)
    interaction = time.perf_counter() - t0
    assert page.evaluate("csMap.frames") > frames + 8
    during = page.evaluate("csMap.frameTimes")   # each frame drawn while panning and zooming
    # what one frame of all 100k points costs, finished on the GPU too
    times = page.evaluate("Array.from({length: 7}, () => csMap.renderNow())")
    if renderer == "auto":
        # Measured on a quiet 2-core VM: frames 4-20 ms, a full frame 9-15 ms. The bounds leave
        # room for a VM shared by several test runs (frames then take up to ~6x longer) and still
        # catch what a stall is made of (per-point DOM or canvas calls, a rebuilt index per frame).
        assert float(np.median(during)) < 60 and max(during) < 1000, during
        assert float(np.median(times)) < 150, times
        assert interaction < 15, interaction
    else:  # WebGL on a software rasterizer is slow (why "auto" picks Canvas2D there) but must draw
        assert float(np.median(times)) < 1000, times
    assert (np.abs(canvas_pixels(page).astype(int) - BG).sum(-1) > 0).any()
    print(f"100k points, {page.get_attribute('#atlas-map', 'data-renderer')}: opened in {opened:.2f} s, "
          f"frames while panning/zooming max {max(during):.0f} ms, one full frame {np.median(times):.0f} ms")


# ---- hover and thumbnails --------------------------------------------------------------------
def test_hover_shows_the_thumbnail_cut_from_its_tile(page: Any, fake: Any, atlases: Any) -> None:
    base, _ = fake
    a = atlases[SMALL]
    open_map(page, base)
    i = isolated_point(page, a.n, start=1800)   # in the last tile, which has 13 of 16 rows
    page.mouse.move(*page_xy(page, i))
    page.wait_for_function(loaded(".map-tip img"))
    tip = page.inner_text(".map-tip")
    assert f"#{i}" in tip and f"label {a.labels[i]}" in tip and f"predicted {a.predictions[i]}" in tip
    page.wait_for_function(f"document.querySelector('.tip-file').textContent.includes('img_{i:06d}')")
    src = page.get_attribute(".map-tip img", "src")
    assert src.endswith(f"/tiles/{i // 256}.png")
    # the crop box shows exactly the fake's thumbnail of i (upscaled with pixelated rendering)
    assert_shows(element_pixels(page, ".map-tip .thumb-crop"), a.thumbnails(np.array([i]))[0])


def test_zooming_in_draws_thumbnails_from_the_visible_tiles_only(page: Any, fake: Any, atlases: Any) -> None:
    base, _ = fake
    a = atlases[SMALL]
    tiles: list[str] = []
    page.on("request", lambda r: tiles.append(r.url) if "/tiles/" in r.url else None)
    open_map(page, base)
    assert page.get_attribute("#atlas-map", "data-mode") == "dots"
    assert not (canvas_pixels(page) == 255).all(-1).any()   # dots are never white
    centre = a.coords["pca"][a.labels == 4].mean(0)
    page.evaluate(ZOOM_AT, centre.tolist())
    page.wait_for_function("csMap.root.dataset.mode === 'thumbs'"
                           " && Array.from(csMap.tiles.values()).every(t => t.ready)")
    settle(page)
    visible = page.evaluate("csMap.visiblePoints(1e9)")
    assert 0 < len(visible) <= 600
    wanted = {i // 256 for i in visible}
    got = {int(u.rsplit("/", 1)[1].split(".")[0]) for u in tiles}
    assert got == wanted, (got, wanted)
    # the thumbnails are on the overlay: their white rows (the fake's pattern) are there
    overlay = page.evaluate("document.querySelector('.map-overlay').toDataURL('image/png')")
    over = np.asarray(Image.open(io.BytesIO(base64.b64decode(overlay.split(",", 1)[1]))).convert("RGBA"))
    assert (over[..., :3] == 255).all(-1).sum() > 20 * len(visible)
    assert colour_counts(over[..., :3], PALETTE[4:5])[0] > 100 * len(visible)
    # zoom out and back: the cached tiles are not fetched again
    n = len(tiles)
    page.evaluate("csMap.fit()")
    page.evaluate(ZOOM_AT, centre.tolist())
    settle(page)
    assert len(tiles) == n


# ---- search, selections, confusion -------------------------------------------------------------
def test_search_highlights_matches_and_stays_in_the_url(page: Any, fake: Any, atlases: Any) -> None:
    base, _ = fake
    a = atlases[SMALL]
    open_map(page, base)
    page.fill(".map-search input", "7")
    page.press(".map-search input", "Enter")
    expected = sum(1 for i in range(a.n) if a.class_names[a.labels[i]] == "7" or "7" in a.source(i))
    page.wait_for_function(f"csMap.root.dataset.highlighted === '{expected}'")
    assert "q=7" in page.url
    assert f"{expected:,} highlighted" in page.inner_text(".map-highlight")
    open_map(page, base, query="?q=img_000017")
    page.wait_for_function("csMap.root.dataset.highlighted === '1'")
    assert page.evaluate("Array.from(csMap.highlight.list)") == [17]
    page.click(".map-highlight button")
    assert page.get_attribute("#atlas-map", "data-highlighted") == "0" and "q=" not in page.url


@pytest.mark.parametrize("tool", ["lasso", "box"])
def test_selection_grid_counts_and_export(page: Any, fake: Any, atlases: Any, tool: str) -> None:
    base, router = fake
    a = atlases[SMALL]
    open_map(page, base)
    centre = a.coords["pca"][a.labels == 2].mean(0)
    offset = page.evaluate("(r => [r.left, r.top])(csMap.overlay.getBoundingClientRect())")
    sx, sy = page.evaluate("c => csMap.toScreen(c[0], c[1])", centre.tolist())
    cx, cy = sx + offset[0], sy + offset[1]
    if tool == "lasso":
        page.click("button[data-tool=lasso]")
        path = [(cx + 70 * math.cos(t), cy + 50 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 40)]
        drag(page, path)
        corners = path
    else:   # shift-drag in the pan tool draws a box
        drag(page, [(cx - 60, cy - 40), (cx, cy), (cx + 60, cy + 40)], shift=True)
        corners = [(cx - 60, cy - 40), (cx + 60, cy - 40), (cx + 60, cy + 40), (cx - 60, cy + 40)]
    poly = np.array([page.evaluate("p => csMap.toData(p[0], p[1])", [x - offset[0], y - offset[1]])
                     for x, y in corners])
    expected = np.flatnonzero(inside(poly, a.coords["pca"].astype(np.float64)))
    assert len(expected) > 50
    page.wait_for_selector(".selection-grid figure")
    assert page.get_attribute("#atlas-map", "data-selected") == str(len(expected))
    assert page.evaluate("Array.from(csMap.selection)") == expected.tolist()
    for column, values in (("label", a.labels), ("prediction", a.predictions)):
        keys, counts = np.unique(values[expected], return_counts=True)
        assert read_counts(page, column) == dict(zip(keys.tolist(), counts.tolist()))
    n_grid = min(len(expected), 240)
    page.wait_for_function(loaded(".sel-item img"))
    first = page.eval_on_selector_all(".sel-item", "f => f.map(e => [+e.dataset.index, e.innerText])")
    assert [f[0] for f in first] == expected[:n_grid].tolist()
    assert first[0][1] == f"{a.labels[expected[0]]} → {a.predictions[expected[0]]}"
    assert_shows(element_pixels(page, ".sel-item .thumb-crop"), a.thumbnails(expected[:1])[0])
    # exports: the download holds a row per selected image with its coordinates
    with page.expect_download() as got:
        page.click(".map-export[data-format=csv]")
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    assert len(rows) == len(expected) and rows[0]["path"] == a.source(int(expected[0]))
    with page.expect_download() as got:
        page.click(".map-export[data-format=json]")
    data = json.loads(Path(got.value.path()).read_text())
    assert [r["index"] for r in data] == expected.tolist()
    assert router.exports[-1] == {"format": "json", "indices": expected.tolist(), "method": "pca"}


def test_confusion_cell_highlights_its_images(page: Any, fake: Any, atlases: Any) -> None:
    base, _ = fake
    a = atlases[SMALL]
    open_map(page, base)
    page.click(".map-confusion-toggle")
    page.wait_for_selector("table.confusion td")
    matrix = np.zeros((10, 10), int)
    np.add.at(matrix, (a.labels, a.predictions), 1)
    cells = "rows => rows.map(r => Array.from(r.cells).slice(1).map(c => +c.textContent))"
    shown = page.eval_on_selector_all("table.confusion tbody tr", cells)
    np.testing.assert_array_equal(np.array(shown), matrix)
    page.click('table.confusion td[data-true="3"][data-pred="4"]')
    page.wait_for_function(f"csMap.root.dataset.highlighted === '{matrix[3, 4]}'")
    expected = np.flatnonzero((a.labels == 3) & (a.predictions == 4))
    assert sorted(page.evaluate("Array.from(csMap.highlight.list)")) == expected.tolist()
    # highlighted points are drawn larger on top; the others are dimmed (no pure class colour but 3's)
    settle(page)
    counts = colour_counts(canvas_pixels(page), PALETTE)
    assert counts[3] > 0 and counts[[0, 1, 2, 4, 5, 6, 7, 8, 9]].sum() == 0


# ---- one point -------------------------------------------------------------------------------
NEIGHBOURS_STUB = """window.csNeighbors = {calls: [], show(panel, atlas, layer, query) {
    this.calls.push([atlas, layer, query]); panel.textContent = 'neighbours of ' + query.index; }};"""


def test_click_opens_the_point_with_neighbours_and_explain_link(page: Any, fake: Any, atlases: Any) -> None:
    base, _ = fake
    a = atlases[SMALL]
    # neighbors.js (helper nbrs') is replaced by a stub: here only the map's call of it is checked
    page.route("**/static/neighbors.js", lambda route: route.fulfill(body=NEIGHBOURS_STUB,
                                                                     content_type="text/javascript"))
    open_map(page, base)
    i = isolated_point(page, a.n)
    page.mouse.click(*page_xy(page, i))
    page.wait_for_selector(".map-point:not([hidden]) .point-thumb")
    page.wait_for_function("document.querySelector('.point-thumb').naturalWidth > 0")
    assert page.evaluate("csNeighbors.calls") == [[SMALL, LAYER, {"index": i}]]
    assert page.inner_text(".neighbors-panel") == f"neighbours of {i}"
    # the fake atlas's model ("fake") is not served: the link names no model
    assert page.get_attribute(".explain-link", "href") == f"/explain?image=atlas%3A{SMALL}%2F{i}"
    assert f"point={i}" in page.url
    # a neighbour clicked in the panel (neighbors.js sends "cs-neighbor") becomes the opened point
    page.evaluate("document.querySelector('.neighbors-panel').dispatchEvent("
                  "new CustomEvent('cs-neighbor', {detail: {index: 7}, bubbles: true}))")
    assert page.get_attribute("#atlas-map", "data-point") == "7"
    assert page.evaluate("csNeighbors.calls.length") == 2 and "point=7" in page.url
    page.goto(page.url.replace("point=7", f"point={i}"))
    page.wait_for_selector(".map-point:not([hidden])")
    assert page.evaluate("csNeighbors.calls") == [[SMALL, LAYER, {"index": i}]]


def test_embed_hides_the_nav(page: Any, fake: Any) -> None:
    base, _ = fake
    open_map(page, base)
    assert page.locator(".cs-nav").is_visible()
    open_map(page, base, query="?embed=1")
    assert page.locator(".cs-nav").count() == 0
    assert page.get_attribute("#atlas-map", "class") == "atlas-map embedded"
    assert (np.abs(canvas_pixels(page).astype(int) - BG).sum(-1) > 0).any()


def test_method_and_layer_selects_make_a_new_address(page: Any, fake: Any) -> None:
    base, _ = fake
    open_map(page, base, query="?color=prediction")
    with page.expect_navigation():
        page.select_option("select[name=method]", "tsne")
    page.wait_for_selector("#atlas-map[data-state=ready]")
    assert page.url.endswith(f"/atlas/{SMALL}/{LAYER}?color=prediction&method=tsne")
    assert page.evaluate("csMap.method") == "tsne"
    with page.expect_navigation():
        page.select_option("select[name=layer]", "classifier.1")
    assert "/atlas/small/classifier.1?" in page.url


def test_a_refused_projection_shows_the_servers_message(page: Any, fake: Any) -> None:
    base, _ = fake
    page.goto(f"{base}/atlas/{SMALL}/{LAYER}?method=nosuch")
    page.wait_for_selector("#atlas-map[data-state=error]")
    assert "unknown method 'nosuch'" in page.inner_text(".map-status")


def test_the_projection_job_shows_progress_then_is_cached(page: Any, fake: Any) -> None:
    base, router = fake
    page.goto(f"{base}/atlas/{SMALL}/classifier.1?method=umap")   # a projection no test asked for
    page.wait_for_selector(".map-progress .cs-job progress")
    page.wait_for_selector("#atlas-map[data-state=ready]", timeout=20_000)
    assert router.projected[-1] in ("queued", "running")
    assert page.is_hidden(".map-progress")
    assert page.get_attribute(".map-progress .cs-job", "data-status") == "done"
    page.goto(f"{base}/atlas/{SMALL}/classifier.1?method=umap")
    page.wait_for_selector("#atlas-map[data-state=ready]")
    assert router.projected[-1] == "done"   # answered from the cache at once


def test_skipped_images_are_left_off_the_map(page: Any, fake: Any, atlases: Any) -> None:
    """A scan's unreadable items have no coordinates: not drawn, never hovered or selected."""
    base, _ = fake
    a = atlases[GAPS]
    for renderer in ("canvas", "webgl"):
        open_map(page, base, GAPS, f"?renderer={renderer}")
        counts = colour_counts(canvas_pixels(page), PALETTE)
        assert (counts > 50).all(), counts
        assert (canvas_pixels(page)[0] == BG).all()   # NaN must not land on the first row
    assert f"unknown\n{(a.labels < 0).sum()}" in page.inner_text(".map-legend")
    box = page.locator(".map-overlay").bounding_box()
    drag(page, [(box["x"] + 2, box["y"] + 2), (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2),
                (box["x"] + box["width"] - 2, box["y"] + box["height"] - 2)], shift=True)
    page.wait_for_selector(".selection-grid figure")
    selected = page.evaluate("Array.from(csMap.selection)")
    assert selected == np.flatnonzero(a.labels >= 0).tolist()


def test_double_click_zooms_and_escape_drops_a_lasso(page: Any, fake: Any) -> None:
    base, _ = fake
    open_map(page, base)
    box = page.locator(".map-overlay").bounding_box()
    x, y = box["x"] + 20, box["y"] + 20   # a corner without points
    scale = page.evaluate("csMap.view.scale")
    page.mouse.dblclick(x, y)
    assert page.evaluate("csMap.view.scale") == pytest.approx(2 * scale)
    page.click("button[data-tool=lasso]")
    page.mouse.move(x, y)
    page.mouse.down()
    for dx, dy in ((400, 0), (400, 400), (0, 400)):
        page.mouse.move(x + dx, y + dy)
    page.keyboard.press("Escape")
    page.mouse.up()
    settle(page)
    assert page.get_attribute("#atlas-map", "data-selected") is None and page.is_hidden(".map-selection")


def test_wheel_zoom_is_clamped_and_leaves_no_stale_tooltip(page: Any, fake: Any, atlases: Any) -> None:
    """The wheel could zoom 10^5x into empty space, and the tooltip kept showing the point that
    was under the pointer before the zoom moved it away."""
    base, _ = fake
    a = atlases[SMALL]
    open_map(page, base)
    i = isolated_point(page, a.n)
    x, y = page_xy(page, i)
    page.mouse.move(x, y)
    page.wait_for_function(f"document.querySelector('.map-tip').dataset.index === '{i}'")
    page.mouse.move(x + 6, y)   # still on the point (pick radius 10 px), off its centre
    for _ in range(40):
        page.mouse.wheel(0, -600)
    settle(page)
    zoom = page.evaluate("csMap.view.scale / csMap.fitScale")
    assert zoom == pytest.approx(page.evaluate("csMap.maxZoom()")) and zoom <= 2 * max(32, a.n ** 0.5)
    shown = page.evaluate("""() => { const t = document.querySelector('.map-tip');
        return t.hidden ? -1 : Number(t.dataset.index); }""")
    under = page.evaluate(f"""() => {{ const r = csMap.overlay.getBoundingClientRect();
        return csMap.nearest({x + 6} - r.left, {y} - r.top); }}""")
    assert shown == under != i  # zoomed about the pointer, point i moved 6 * zoom px away
