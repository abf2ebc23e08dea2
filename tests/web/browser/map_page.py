"""Helpers of the map page's browser tests: reading the canvas back, finding points, drawing a lasso."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

BG = (250, 250, 250)


def loaded(selector: str) -> str:
    """A page condition: there are images matching ``selector`` and all of them are decoded."""
    return (f"document.querySelectorAll('{selector}').length > 0 && Array.from("
            f"document.querySelectorAll('{selector}')).every(i => i.complete && i.naturalWidth > 0)")


def settle(page: Any) -> None:
    """Wait until the frames requested so far are drawn."""
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def canvas_pixels(page: Any) -> np.ndarray:
    """(H, W, 3) pixels of the points canvas itself (WebGL or 2D), read back from the page."""
    url = page.evaluate("document.querySelector('.map-points').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def element_pixels(page: Any, selector: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator(selector).first.screenshot())).convert("RGB"))


def colour_counts(pixels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """How many pixels have exactly each of ``colours``."""
    flat = pixels.reshape(-1, 3).astype(np.int32)
    keys = flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]
    wanted = colours.astype(np.int32)
    return np.array([(keys == (c[0] << 16 | c[1] << 8 | c[2])).sum() for c in wanted])


def page_xy(page: Any, index: int) -> tuple[float, float]:
    """Where point ``index`` is on the page (CSS px)."""
    return tuple(page.evaluate(
        "i => { const p = csMap.pointOnScreen(i), r = csMap.overlay.getBoundingClientRect();"
        " return [p[0] + r.left, p[1] + r.top]; }", index))


def isolated_point(page: Any, n: int, start: int = 0) -> int:
    """A point with no other point within 12 px on screen (so hover and click pick exactly it)."""
    xy = np.array(page.evaluate("Array.from({length: csMap.n}, (_, i) => csMap.pointOnScreen(i))"))
    size = page.evaluate("[csMap.size().w, csMap.size().h]")
    for i in range(start, n):
        d = np.hypot(*(xy - xy[i]).T)
        d[i] = np.inf
        if d.min() > 12 and 40 < xy[i, 0] < size[0] - 200 and 40 < xy[i, 1] < size[1] - 200:
            return i
    raise AssertionError("no isolated point")


def inside(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd rule: which of ``pts`` (N, 2) lie inside the polygon ``poly`` (M, 2)."""
    x, y, result = pts[:, 0], pts[:, 1], np.zeros(len(pts), bool)
    for (ax, ay), (bx, by) in zip(poly, np.roll(poly, 1, axis=0)):
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = ((ay > y) != (by > y)) & (x < (bx - ax) * (y - ay) / (by - ay) + ax)
        result ^= cross
    return result


def drag(page: Any, path: list[tuple[float, float]], shift: bool = False) -> None:
    if shift:
        page.keyboard.down("Shift")
    page.mouse.move(*path[0])
    page.mouse.down()
    for p in path[1:]:
        page.mouse.move(*p)
    page.mouse.up()
    if shift:
        page.keyboard.up("Shift")


def read_counts(page: Any, column: str) -> dict[int, int]:
    rows = page.eval_on_selector_all(f"table.counts[data-column={column}] tbody tr",
                                     "rows => rows.map(r => [r.dataset.class, r.cells[1].textContent])")
    return {int(k): int(v) for k, v in rows}


def assert_shows(shown: np.ndarray, thumbnail: np.ndarray) -> None:
    """``shown`` (a screenshot of a .thumb-crop: a thumbnail cut from its tile, upscaled with
    pixelated rendering) is ``thumbnail`` (t, t, 3): each upscaled pixel's centre has its colour."""
    t = thumbnail.shape[0]
    step = shown.shape[0] / t
    centres = (np.arange(t) * step + step / 2).astype(int)
    np.testing.assert_array_equal(shown[np.ix_(centres, centres)], thumbnail)
