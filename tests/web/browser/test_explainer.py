"""The image explainer in Chromium: choose a sample, click a class, three maps side by side,
export, reopen the address, and an upload that is not an image."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image

from convscope.methods.registry import get_method, method_names
from convscope.web.cache import JobResult
from tests.web.pictures import canvas_drawn, image_drawn
from tests.web.polling import wait_job

MAPS = "#ex-maps .ex-map canvas.ex-overlay"


def test_explain_three_methods_and_export(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/explain")
    page.select_option("#ex-image-choice", "sample:coffee")  # navigates: the choice is in the address
    page.wait_for_url("**image=sample%3Acoffee**")
    assert image_drawn(page, "#ex-image")
    page.locator("#ex-classes button").first.wait_for()
    for method in ("gradcam", "saliency", "occlusion"):
        page.locator(f'.ex-method[data-method="{method}"] input.ex-use').check()
    page.locator('.ex-method[data-method="occlusion"] summary').click()
    page.fill('input[name="occlusion.window"]', "7")  # a coarse window: 16 positions on 28x28
    page.fill('input[name="occlusion.stride"]', "7")
    second = page.locator("#ex-classes button").nth(1)
    chosen = second.get_attribute("data-class")
    second.click()
    page.wait_for_function(f"""() => {{ const imgs = [...document.querySelectorAll('{MAPS}')];
        return imgs.length === 3 && imgs.every(i => !i.hidden && i.dataset.drawn); }}""")
    assert all(canvas_drawn(page, f"{MAPS} >> nth={i}") for i in range(page.locator(MAPS).count()))
    cards = page.locator("#ex-maps .ex-map")
    assert sorted(cards.nth(i).get_attribute("data-method") for i in range(3)) == [
        "gradcam", "occlusion", "saliency"]
    for i in range(3):
        card = cards.nth(i)
        assert " s" in card.locator(".numbers").inner_text()
        png = page.request.get(live_server + card.locator("a.export-png").get_attribute("href"))
        raw = page.request.get(live_server + card.locator("a.export-npy").get_attribute("href"))
        assert png.status == 200 and png.body().startswith(b"\x89PNG")
        assert raw.status == 200 and np.load(io.BytesIO(raw.body())).shape == (28, 28)
    # the address now holds the whole state: reopening it draws the same maps (from the cache)
    assert f"target={chosen}" in page.url and "occlusion.window=7" in page.url
    page.reload()
    page.wait_for_function(f"""() => {{ const imgs = [...document.querySelectorAll('{MAPS}')];
        return imgs.length === 3 && imgs.every(i => !i.hidden && i.dataset.drawn); }}""")
    assert page.locator(f'#ex-classes button.active[data-class="{chosen}"]').count() == 1
    assert not [e for e in page.console_errors if "status of 4" not in e]


def test_an_upload_that_is_not_an_image_shows_the_message(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/explain?image=sample:cat")
    page.set_input_files("#ex-upload", files=[{"name": "notes.png", "mimeType": "image/png",
                                               "buffer": b"these are not pixels\n" * 4}])
    error = page.locator("#ex-upload-error")
    error.wait_for(state="visible")
    assert error.inner_text().startswith("image file 'notes.png' is not an image format PIL can read")
    assert "image=sample%3Acat" in page.url or "image=sample:cat" in page.url  # stayed on the page
    picture = io.BytesIO()
    Image.fromarray(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))).save(picture, "PNG")
    page.set_input_files("#ex-upload", files=[{"name": "ramp.png", "mimeType": "image/png",
                                               "buffer": picture.getvalue()}])
    page.wait_for_url("**image=upload%3A**")  # a good upload becomes the page's image
    page.locator("#ex-classes button").first.wait_for()
    assert image_drawn(page, "#ex-image")
    # shown by its file name, not by the 64 hex digits of its reference
    assert page.locator(".ex-image figcaption").inner_text() == "ramp.png (upload)"
    chosen = page.locator("#ex-image-choice option:checked")
    assert chosen.inner_text() == "ramp.png" and chosen.get_attribute("value").startswith("upload:")
    page.select_option("#ex-model", "efficientnet_lite0")  # the name stays with the image
    page.wait_for_url("**model=efficientnet_lite0**")
    assert page.locator(".ex-image figcaption").inner_text() == "ramp.png (upload)"


def test_a_long_explanation_streams_its_progress_and_can_be_cancelled(live_server: str, page: Any) -> None:
    """Occlusion of EfficientNet-Lite0 with a fine stride (729 windows) reports progress per
    chunk; the card's cancel button stops it and the card says so."""
    page.goto(f"{live_server}/explain?image=sample:cat&model=efficientnet_lite0&methods=occlusion"
              "&occlusion.window=16&occlusion.stride=8&occlusion.batch_size=16&target=285")
    status = page.locator('#ex-maps .ex-map[data-method="occlusion"] .cs-job-status')
    page.wait_for_function("""() => { const s = document.querySelector(
        '#ex-maps .ex-map[data-method="occlusion"] .cs-job-status');
        return s && /running \\d+\\/\\d+/.test(s.textContent); }""")
    assert "running" in status.inner_text()
    page.locator('#ex-maps .ex-map[data-method="occlusion"] button.cs-cancel').click()
    page.wait_for_function("""() => document.querySelector(
        '#ex-maps .ex-map[data-method="occlusion"] .cs-job').dataset.status === 'cancelled'""")
    card = page.locator('#ex-maps .ex-map[data-method="occlusion"]')
    assert "cancelled" in card.locator(".cs-error").inner_text()
    assert card.locator("canvas.ex-overlay").is_hidden()


SHOWN_AT = """document.addEventListener("cs-drawn", (e) => {
    if (e.target.matches && e.target.matches("canvas.ex-overlay")) e.target.dataset.shownAt = Date.now();
  }, true);"""
"""Records, on each map, the wall-clock time its picture was drawn (load events do not bubble)."""


@pytest.mark.timing
def test_every_map_is_drawn_within_a_second_of_its_job_finishing(app: Any, live_server: str,
                                                                page: Any) -> None:
    """Every registered method ticked (the CAM family's seven new ones too): each card's map
    appears within 1 s of the time the server records for its job's end (one event stream for
    the page, so the downloads are not held back)."""
    page.add_init_script(SHOWN_AT)
    page.goto(f"{live_server}/explain?image=sample:coffee&model=digits_cnn")
    boxes = page.locator("#ex-method-list input.ex-use")
    assert boxes.count() == len(method_names())
    # D-RISE explains a detector's detection only; digits_cnn is a classifier
    classifier = [n for n in method_names() if not getattr(get_method(n).cls, "detections_only", False)]
    for name in classifier:
        page.locator(f"#ex-method-list input.ex-use[value='{name}']").check()
    count = len(classifier)
    page.locator("#ex-run").click()
    page.wait_for_function(f"""() => {{ const cards = [...document.querySelectorAll('#ex-maps .ex-map')];
        return cards.length === {count}
            && cards.every(c => c.querySelector('canvas.ex-overlay').dataset.shownAt
                                || !c.querySelector('.cs-error').hidden); }}""",
                           timeout=90_000)
    assert not page.locator("#ex-maps .cs-error:visible").count()
    finished = {j.result.data["method"]: j.finished for j in reversed(app.state.cs.jobs.list())
                if j.kind == "explain" and j.status == "done"}  # the newest job of each method
    late = {}
    for card in page.locator("#ex-maps .ex-map").all():
        method = card.get_attribute("data-method")
        shown = int(card.locator("canvas.ex-overlay").get_attribute("data-shown-at")) / 1000
        late[method] = round(shown - finished[method], 3)
    assert len(late) == count and max(late.values()) < 1.0, late


def test_top_classes_appear_while_a_lab_job_runs(app: Any, client: Any, live_server: str,
                                                  page: Any) -> None:
    """An adversarial attack leaves the model at rest between its steps: the page's top classes
    run there, on the worker, instead of after the whole job ("predicting…" for 26 s)."""
    settings = {"image": "sample:cat", "steps": 3000, "early_stop": "0", "size": 96,
                "model": "efficientnet_lite0"}
    job = client.post("/api/lab/adversarial", json=settings).json()
    wait_job(client, job["id"], lambda j: j["done"] >= 1)
    try:
        page.goto(f"{live_server}/explain?image=sample:cat&model=efficientnet_lite0")
        page.locator("#ex-classes button").first.wait_for()
        lab = client.get(f"/api/jobs/{job['id']}").json()
        assert lab["status"] == "running" and lab["done"] < lab["total"], lab
    finally:
        client.post(f"/api/jobs/{job['id']}/cancel")


def test_top_classes_say_which_running_job_they_wait_for(app: Any, client: Any, live_server: str,
                                                         page: Any) -> None:
    """A job that keeps a hook on the model between its steps (as a scan's hooks stay for the
    whole scan) holds the top classes back; the page names the job they wait for (it said only
    "predicting…"), and the classes come once the job ends."""
    state = app.state.cs
    model = state.model("efficientnet_lite0").model
    release = threading.Event()

    def holding(progress: Any) -> JobResult:
        handle = model.register_forward_hook(lambda *_: None)
        try:
            for step in range(600):
                if release.is_set():
                    break
                progress(step, 600)
                time.sleep(0.05)
        finally:
            handle.remove()
        return JobResult(data={})

    job = state.jobs.submit("lab", "Texture synthesis (a hook held)", holding)
    wait_job(client, job.id, lambda j: j["done"] >= 1)
    try:
        page.goto(f"{live_server}/explain?image=sample:coffee&model=efficientnet_lite0")
        note = page.locator("#ex-classes .cs-wait")
        note.wait_for()
        assert "waiting for the running job" in note.inner_text() and "Texture" in note.inner_text()
        assert page.locator("#ex-classes button").count() == 0
    finally:
        release.set()
    page.locator("#ex-classes button").first.wait_for()
    assert not page.locator("#ex-classes .cs-wait").count()


def test_the_colour_key_and_the_metric_arrows_are_shown(live_server: str, page: Any) -> None:
    """As in the report: the overlays' colour key, and which way each faithfulness AUC is better."""
    page.goto(f"{live_server}/explain?image=sample:coffee&model=digits_cnn&methods=saliency"
              "&faithfulness=1&target=3")
    assert image_drawn(page, ".ex-key .key img")
    assert page.locator(".ex-key .key img").count() == 2
    key = page.locator(".ex-key").inner_text()
    assert "signed maps" in key and "against" in key and "deletion AUC ↓ / insertion AUC ↑" in key
    metrics = page.locator('#ex-maps .ex-map[data-method="saliency"] .numbers .metric')
    metrics.nth(1).wait_for()
    assert metrics.nth(0).inner_text().startswith("deletion ") and metrics.nth(0).inner_text().endswith(" ↓")
    assert metrics.nth(1).inner_text().startswith("insertion ") and metrics.nth(1).inner_text().endswith(" ↑")
    assert metrics.nth(0).get_attribute("title") == "deletion AUC: lower is better"
    assert metrics.nth(1).get_attribute("title") == "insertion AUC: higher is better"
