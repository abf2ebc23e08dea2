"""The synthesis lab: every kind runs end to end as a job, results are cached, bad settings are a
clear 4xx before anything runs, and a cancelled job leaves the model exactly as it was."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from convscope.data import load_image
from convscope.model import Model
from tests.model_safety import assert_unharmed, snapshot
from tests.web.polling import wait_job

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_STYLE = {"steps": 2, "size": 32, "batch": 1, "width": 4, "blocks": 1, "style_size": 32,
              "content": "sample:coffee", "style": "sample:brick", "image": "sample:cat", "apply_size": 48,
              "model": "efficientnet_lite0"}


@pytest.fixture
def folder(app: Any) -> str:
    """The id of the app's ``--images`` folder (its name)."""
    return next(iter(app.state.cs.image_folders))


def run(client: TestClient, kind: str, **settings: Any) -> dict[str, Any]:
    answer = client.post(f"/api/lab/{kind}", json={**settings, "wait": True})
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["status"] == "done", job
    return job


def png(client: TestClient, url: str) -> Image.Image:
    answer = client.get(url)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(answer.content))


def same_file(client: TestClient, a: dict[str, Any], b: dict[str, Any], name: str) -> bool:
    return bool(client.get(a["files"][name]).content == client.get(b["files"][name]).content)


def test_adversarial_shows_the_images_and_the_served_png_is_what_it_judged(
        client: TestClient, web_models: dict[str, Model], folder: str) -> None:
    job = run(client, "adversarial", image=f"folder:{folder}/noise.png", target="3", eps="24/255", steps=20,
              margin=0)
    files, data = job["files"], job["data"]
    assert [p["file"] for p in data["pictures"]] == ["original.png", "adversarial.png", "perturbation.png"]
    assert all(png(client, files[p["file"]]).size == (28, 28) for p in data["pictures"])
    # the picture the browser gets, decoded and classified again, is the verdict the page shows
    served = load_image(client.get(files["adversarial.png"]).content)
    digits = web_models["digits_cnn"]
    with torch.no_grad():
        probs = digits(digits.normalize(served[None])).softmax(-1)[0]
    assert data["saved_png"]["top"][0]["index"] == int(probs.argmax())
    assert data["saved_png"]["fools"] == (int(probs.argmax()) == 3)
    original = load_image(client.get(files["original.png"]).content)
    assert float((served - original).abs().max()) <= 24 / 255 + 1e-6
    assert data["before"][0]["index"] == int(data["original"].split("(")[-1].rstrip(")"))
    assert data["target"] == "3 (3)" and data["eps"] == pytest.approx(24 / 255)


def test_a_folder_image_that_changed_gets_a_new_result(client: TestClient, app: Any, folder: str) -> None:
    """Results are keyed by the image's pixels, not only its reference."""
    path = app.state.cs.image_folders[folder] / "changing.png"
    Image.new("RGB", (28, 28), (10, 10, 10)).save(path)
    try:
        settings = {"image": f"folder:{folder}/changing.png", "eps": "2/255", "steps": 2}
        first = run(client, "adversarial", **settings)
        Image.new("RGB", (30, 28), (240, 240, 240)).save(path)  # another size: a new mtime and size
        second = run(client, "adversarial", **settings)
        assert second["key"] != first["key"] and second["message"] != "cached"
    finally:
        path.unlink()


def test_the_same_settings_are_answered_from_the_cache(client: TestClient) -> None:
    settings = {"image": "sample:cat", "eps": "2/255", "steps": 2}
    first = run(client, "adversarial", **settings)
    again = client.post("/api/lab/adversarial", json=settings).json()
    assert again["status"] == "done" and again["message"] == "cached" and again["key"] == first["key"]
    assert again["data"] == first["data"]
    other = client.post("/api/lab/adversarial", json={**settings, "model": "efficientnet_lite0"}).json()
    assert other["key"] != first["key"]
    client.post(f"/api/jobs/{other['id']}/cancel")  # not needed: do not hold up the next tests


@pytest.mark.parametrize("kind, settings, picture", [
    ("fooling", {"target": "7", "steps": 3}, (28, 28)),
    ("inversion", {"image": "sample:cat", "layers": "block1, block2", "steps": 2}, None),
    ("texture", {"image": "sample:brick", "layers": "block1,block2", "size": 28,
                 "source_size": 28, "steps": 2}, (28, 28)),
    ("style", {"content": "sample:cat", "style": "sample:brick", "content_layer": "block2",
               "style_layers": "block1", "size": 24, "steps": 2, "optimizer": "adam"}, None),
])
def test_each_kind_runs_end_to_end(client: TestClient, kind: str, settings: dict[str, Any],
                                   picture: tuple[int, int] | None) -> None:
    job = run(client, kind, **settings)
    assert job["data"]["headline"] and job["total"] >= 1 and job["done"] == job["total"]
    image = png(client, job["files"]["result.png"])
    assert picture is None or image.size == picture
    if kind == "inversion":
        assert job["data"]["layers"] == ["block1", "block2"]


def test_fast_style_trains_a_network_and_applies_it_again_by_reference(client: TestClient) -> None:
    trained = run(client, "fast_style", **TINY_STYLE)
    data = trained["data"]
    assert data["steps_run"] == 2 and data["width"] == 4 and data["net"] == f"lab:{trained['key']}"
    assert client.get(trained["files"]["net.pt"]).content[:2] == b"PK"  # a torch.save zip
    styled = png(client, trained["files"]["result.png"])
    assert max(styled.size) == 48
    applied = run(client, "fast_style", image="sample:cat", net=data["net"], apply_size=48,
                  model="efficientnet_lite0")
    assert same_file(client, applied, trained, "result.png")
    other_training = client.post("/api/lab/fast_style", json={"image": "sample:cat", "net": data["net"],
                                                               "apply_size": 48, "steps": 7,
                                                               "model": "efficientnet_lite0"}).json()
    assert other_training["key"] == applied["key"] and other_training["message"] == "cached"


def test_fast_style_applies_a_network_file_from_an_images_folder(client: TestClient, image_folder: Path,
                                                                 folder: str) -> None:
    trained = run(client, "fast_style", **TINY_STYLE)
    (image_folder / "nets").mkdir(exist_ok=True)
    (image_folder / "nets" / "brick.pt").write_bytes(client.get(trained["files"]["net.pt"]).content)
    applied = run(client, "fast_style", image="sample:cat", net=f"folder:{folder}/nets/brick.pt",
                  apply_size=48)
    assert same_file(client, applied, trained, "result.png")


@pytest.mark.parametrize("kind, settings, status, words", [
    ("adversarial", {"eps": "-1/255"}, 400, "eps"),
    ("adversarial", {"eps": "four"}, 400, "eps"),
    ("adversarial", {"steps": 0}, 400, "steps"),
    ("adversarial", {"target": "cat"}, 400, "not a class label"),
    ("adversarial", {"target": "10"}, 400, "the model has 10 classes"),
    ("adversarial", {"norm": "l3"}, 400, "norm"),
    ("adversarial", {"size": 4}, 400, "size"),
    ("adversarial", {"budget": "1/255"}, 400, "no setting 'budget'"),
    ("adversarial", {"image": "sample:nope"}, 404, "no sample"),
    ("adversarial", {"image": "folder:FOLDER/../../etc/passwd"}, 403, "'..'"),
    ("fooling", {}, 400, "target is required"),
    ("fooling", {"target": "1", "threshold": 1}, 400, "threshold"),
    ("fooling", {"target": "1", "start": "sample:nope"}, 404, "no sample"),
    ("inversion", {"layers": "blok1"}, 404, "did you mean block1"),
    ("inversion", {"layers": " , "}, 400, "layer"),
    ("texture", {}, 400, "no default style/content layers"),
    ("style", {"content_layer": "block1,block2", "style_layers": "block1"}, 400, "one layer"),
    ("fast_style", {"net": "lab:0123456789abcdef"}, 404, "no file"),
    ("fast_style", {"net": "folder:FOLDER/noise.png"}, 404, ".pt"),
    ("fast_style", {"net": "/etc/passwd"}, 400, "lab:KEY"),
    ("fast_style", {"net": "folder:FOLDER/../x.pt"}, 403, "'..'"),
    ("fast_style", {"content": " , "}, 400, "content"),
    ("nope", {}, 404, "kinds: adversarial"),
])
def test_bad_settings_are_a_clear_4xx_before_anything_runs(
        client: TestClient, folder: str, kind: str, settings: dict[str, Any], status: int, words: str
) -> None:
    settings = {k: v.replace("FOLDER", folder) if isinstance(v, str) else v for k, v in settings.items()}
    before = len(client.get("/api/jobs").json()["jobs"])
    answer = client.post(f"/api/lab/{kind}", json=settings)
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    assert words in message and "\n" not in message
    assert len(client.get("/api/jobs").json()["jobs"]) == before


def test_the_page_keeps_its_settings_in_the_address_and_checks_them(client: TestClient, folder: str) -> None:
    html = client.get("/lab?kind=adversarial&target=3&eps=8/255&run=1", headers={"accept": "text/html"}).text
    assert 'data-kind="adversarial"' in html and 'data-autorun="1"' in html
    assert 'name="eps" value="8/255"' in html and 'name="target" value="3"' in html
    assert f'value="folder:{folder}/noise.png"' in html  # the image choices
    default = client.get("/lab", headers={"accept": "text/html"}).text
    assert 'name="steps" value="40"' in default and 'name="eps" value="4/255"' in default
    for kind in ("fooling", "inversion", "texture", "style", "fast_style"):  # opens without them
        assert client.get(f"/lab?kind={kind}", headers={"accept": "text/html"}).status_code == 200
    bad = client.get("/lab?kind=adversarial&eps=-1", headers={"accept": "text/html"})
    assert bad.status_code == 400 and "eps" in bad.text
    assert client.get("/lab?kind=nope", headers={"accept": "text/html"}).status_code == 404
    assert client.get("/lab?kind=style&embed=1", headers={"accept": "text/html"}).status_code == 200
    assert client.get("/lab?model=nope", headers={"accept": "text/html"}).status_code == 404


@pytest.mark.parametrize("kind, settings", [
    ("adversarial", {"image": "sample:cat", "steps": 400, "early_stop": "0", "size": 96,
                     "model": "efficientnet_lite0"}),
    ("fast_style", {**TINY_STYLE, "steps": 400, "seed": 1}),
])
def test_a_cancelled_job_ends_cancelled_and_leaves_the_model_unharmed(
        client: TestClient, web_models: dict[str, Model], kind: str, settings: dict[str, Any]) -> None:
    model = web_models["efficientnet_lite0"]
    modes = [(m, m.training) for m in model.modules()]
    frozen = next(model.parameters())
    model.train()  # a user's model mid-fine-tuning: train mode, one tensor frozen
    frozen.requires_grad_(False)
    try:
        before = snapshot(model)
        job = client.post(f"/api/lab/{kind}", json=settings).json()
        wait_job(client, job["id"], lambda j: j["done"] >= 1)
        assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
        ended = wait_job(client, job["id"], lambda j: j["status"] not in ("queued", "running"))
        assert ended["status"] == "cancelled" and ended["done"] < ended["total"]
        assert_unharmed(model, before)
    finally:
        for module, mode in modes:
            module.train(mode)
        frozen.requires_grad_(True)
    again = client.post(f"/api/lab/{kind}", json=settings).json()  # cancelled results are not cached
    assert again["status"] in ("queued", "running") and again["id"] != job["id"]
    client.post(f"/api/jobs/{again['id']}/cancel")
    wait_job(client, again["id"], lambda j: j["status"] == "cancelled")


def test_the_lab_sees_the_image_as_the_explainer_does(client: TestClient) -> None:
    """The lab squashed a photo to the model's input while the explainer (the model's own
    preprocessing) crops its centre: the cat was 69.4% in one and 41.7% in the other."""
    body = {"image": "sample:cat", "model": "efficientnet_lite0", "steps": 1, "early_stop": "0",
            "wait": True}
    job = client.post("/api/lab/adversarial", json=body).json()
    assert job["status"] == "done", job
    before = job["data"]["before"][0]
    top = client.get("/api/predict", params={"image": "sample:cat", "model": "efficientnet_lite0",
                                             "k": 1}).json()["predictions"][0]
    assert before["index"] == top["index"], (before, top)
    assert abs(before["probability"] - top["probability"]) < 0.01, (before, top)  # 8-bit rounding
