"""The README's screenshots of ``convscope serve``: ``python docs/web_pictures.py``.

Starts the app the way ``convscope serve`` does (EfficientNet-Lite0 and digits_cnn, an atlas of
the 5,000 MNIST digits scanned with digits_cnn), drives Debian's Chromium through Playwright and
saves what the pages drew: the image explainer with three methods, a unit page, and the digits
map zoomed in until thumbnails replace the dots.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

import convscope
from convscope.tasks.scan import scan_dataset
from convscope.web.app import create_app
from convscope.web.config import ServeConfig
from convscope.web.server import start_in_thread

OUT = Path(__file__).parent / "images"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--enable-unsafe-swiftshader"]


def explainer(page: Page, base: str) -> None:
    page.goto(f"{base}/explain?image=sample:cat&model=efficientnet_lite0&target=285"
              "&methods=gradcam,integrated_gradients,occlusion&faithfulness=1")
    page.wait_for_function("""() => { const imgs = [...document.querySelectorAll('#ex-maps img.ex-overlay')];
        return imgs.length === 3 && imgs.every(i => !i.hidden && i.complete && i.naturalWidth > 0); }""",
                           timeout=300_000)
    time.sleep(0.5)
    page.set_viewport_size({"width": 1360, "height": 1130})
    page.screenshot(path=str(OUT / "web_explain.png"), full_page=False)
    page.set_viewport_size({"width": 1360, "height": 860})


def unit(page: Page, base: str) -> None:
    page.goto(f"{base}/layers/_blocks.10/7?model=efficientnet_lite0&image=sample:cat")
    page.wait_for_selector('#visualizations .vis[data-seed="3"][data-state="done"]', timeout=600_000)
    page.wait_for_selector('#classes[data-state="done"]', timeout=300_000)
    time.sleep(0.5)
    page.screenshot(path=str(OUT / "web_unit.png"), full_page=False)


def digits_map(page: Page, base: str, atlas_id: str, layer: str) -> None:
    page.goto(f"{base}/atlas/{atlas_id}/{layer}?method=tsne&color=label")
    page.wait_for_function("() => window.csMap && csMap.n > 0 && csMap.pointOnScreen(0)", timeout=900_000)
    time.sleep(1.0)
    # zoom in (x5) around the middle of the points until thumbnails replace the dots
    page.evaluate("""() => { const xy = Array.from({length: csMap.n}, (_, i) => csMap.pointOnScreen(i));
        const mid = k => xy.map(p => p[k]).sort((a, b) => a - b)[Math.floor(xy.length * 0.45)];
        csMap.zoomAt(mid(0), mid(1), 5); }""")
    time.sleep(3.0)
    page.screenshot(path=str(OUT / "web_map.png"), full_page=False)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="convscope-web-pictures-"))
    digits = convscope.load_model("digits_cnn")
    atlas = scan_dataset(digits, "mnist5k", work / "mnist5k")
    layer = atlas.layers[0]
    config = ServeConfig(models=["efficientnet_lite0", "digits_cnn"], atlases=[work / "mnist5k"],
                         cache_dir=work / "cache")
    app = create_app(config, models=[("efficientnet_lite0", convscope.load_model("efficientnet_lite0")),
                                     ("digits_cnn", digits)])
    server = start_in_thread(app)
    base = server.url.rstrip("/")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        for step in sys.argv[1:] or ["explainer", "unit", "map"]:
            if step == "explainer":
                explainer(page, base)
            elif step == "unit":
                unit(page, base)
            elif step == "map":
                digits_map(page, base, "mnist5k", layer)
        browser.close()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
