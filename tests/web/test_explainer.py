"""The image explainer over HTTP: its maps are the CLI's maps, and every bad input is a clear 4xx.

The maps and numbers are checked against what the CLI (``convscope explain --raw``, ``convscope
evaluate``) computes for the same image, never against a snapshot of the app's own output; each
bad input gets the CLI's one-line message where the CLI can be given the same input.
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import convscope
from convscope.cli.main import main
from convscope.data import load_image
from convscope.methods.option_specs import describe
from convscope.methods.registry import method_names
from convscope.tasks.evaluate import evaluate
from convscope.tasks.predict import predict
from convscope.web.explainer import FAITHFULNESS_STEPS

DIGITS = "digits_cnn"


def explain_json(client: TestClient, **body: Any) -> dict[str, Any]:
    body = {"image": "sample:cat", "method": "gradcam", "target": 3, "wait": True} | body
    reply = client.post("/api/explain", json=body)
    assert reply.status_code == 200, reply.text
    job = reply.json()
    assert job["status"] == "done", job
    return job


def npy(client: TestClient, job: dict[str, Any]) -> np.ndarray:
    reply = client.get(job["files"]["map.npy"])
    assert reply.status_code == 200
    return np.load(io.BytesIO(reply.content), allow_pickle=False)


def cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one line ``convscope`` prints for a bad input, without its ``convscope CMD: error:``."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0].split(": error: ", 1)[1]


def refused(reply: Any, status: int | None = None) -> str:
    """A 4xx with one line and no traceback; returns the line."""
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text)
    assert status is None or reply.status_code == status, (reply.status_code, reply.text)
    assert "Traceback" not in reply.text
    if reply.headers["content-type"].startswith("application/json"):
        message = reply.json()["error"]
    else:
        found = re.search(r'id="error-message">([^<]*)<', reply.text)
        assert found, reply.text
        message = found.group(1).replace("&#39;", "'").replace("&#34;", '"').replace("&amp;", "&")
    assert message and "\n" not in message
    return message


# -- the maps are the CLI's ---------------------------------------------------------------------

def test_a_map_is_what_the_cli_writes(client: TestClient, tmp_path: Path) -> None:
    job = explain_json(client)
    data = job["data"]
    assert (data["method"], data["target"], data["label"], data["layer"]) == ("gradcam", 3, "3", "block4")
    assert data["seconds"] > 0 and "last spatial feature map" in data["layer_reason"]
    out, raw = tmp_path / "cat.png", tmp_path / "cat.npy"
    assert main(["explain", "sample:cat", "--method", "gradcam", "--target", "3", "--model", DIGITS,
                 "--out", str(out), "--raw", str(raw)]) == 0
    served = npy(client, job)
    assert served.dtype == np.float32 and served.shape == (28, 28)
    np.testing.assert_allclose(served, np.load(raw), rtol=1e-5, atol=1e-7)
    picture = Image.open(io.BytesIO(client.get(data["overlay"]).content))  # drawn on this request
    assert picture.size == (451, 300)  # drawn on the photo at its own size, as the CLI draws it
    assert np.abs(np.asarray(picture.convert("RGB"), dtype=int)
                  - np.asarray(Image.open(out).convert("RGB"), dtype=int)).max() <= 1
    again = client.get(data["overlay"])  # kept in the cache entry
    assert again.content == client.get(data["overlay"]).content
    assert "immutable" in again.headers["cache-control"]


def test_the_levels_coloured_on_the_box_are_the_overlay(client: TestClient) -> None:
    """What the page draws: the job's gray levels scaled onto the box the model saw, coloured
    by the table in the page's setup, over the photo, the rest darkened to half (render.overlay's
    ``unseen``), is the full overlay (here both at the photo's own size)."""
    job = explain_json(client)
    data = job["data"]
    levels = Image.open(io.BytesIO(client.get(job["files"]["levels.png"]).content))
    assert levels.mode == "L" and levels.size == (28, 28)  # the map's input resolution
    assert data["size"] == [300, 451] and not data["signed"]
    top, left, bottom, right = data["box"]
    assert 0 <= left < right <= 451 and (top, bottom) == (0, 300)  # a centre crop of the photo
    page = client.get("/explain", params={"image": "sample:cat", "model": DIGITS}).text
    setup = json.loads(re.search(r'id="ex-setup"[^>]*>(.*?)</script>', page, re.S).group(1))
    table = np.array(setup["colours"]["unsigned"], dtype=np.uint8).reshape(256, 4)
    photo = np.asarray(load_image("sample:cat").permute(1, 2, 0)) * 1.0
    x0, x1 = round(left), round(right)
    placed = table[np.asarray(levels.resize((x1 - x0, 300), Image.BILINEAR))] / 255
    shown = photo * 0.5
    rgb, a = placed[..., :3], placed[..., 3:]
    shown[:, x0:x1] = rgb * a + photo[:, x0:x1] * (1 - a)
    drawn = np.asarray(Image.open(io.BytesIO(client.get(data["overlay"]).content)).convert("RGB")) / 255
    assert np.abs(shown - drawn).mean() < 0.01


def test_the_answer_carries_the_levels_the_page_colours(client: TestClient) -> None:
    """The map needs no second request: the answer's ``data["levels"]`` is ``levels.png`` as a
    ``data:`` URL, in the first answer and in the cached one alike."""
    for job in (explain_json(client), explain_json(client)):
        header, _, body = job["data"]["levels"].partition(",")
        assert header == "data:image/png;base64"
        assert base64.b64decode(body) == client.get(job["files"]["levels.png"]).content
    assert job["message"] == "cached"


def test_a_second_request_is_answered_from_the_cache(client: TestClient) -> None:
    first = explain_json(client, method="saliency", target=5)
    again = client.post("/api/explain", json={"image": "sample:cat", "method": "saliency", "target": "5",
                                               "options": {"magnitude": "abs"}}).json()
    assert again["status"] == "done" and again["message"] == "cached" and again["key"] == first["key"]
    assert again["files"] == first["files"]  # default option values do not make a new entry
    other = explain_json(client, method="saliency", target=5, options={"magnitude": "square"})
    assert other["key"] != first["key"] and other["data"]["options"] == {"magnitude": "square"}


def test_options_reach_the_method(client: TestClient, web_models: dict[str, Any]) -> None:
    job = explain_json(client, method="occlusion", target=8, options={"window": 7, "stride": 7})
    alone = convscope.explain(web_models[DIGITS], "sample:cat", "occlusion", target=8, window=7, stride=7)
    np.testing.assert_allclose(npy(client, job), alone.map_array(0), rtol=1e-5, atol=1e-6)
    assert job["data"]["options"] == {"window": 7, "stride": 7}
    coarser = explain_json(client, method="occlusion", target=8, options={"window": 14, "stride": 14})
    assert not np.allclose(npy(client, coarser), npy(client, job))


@pytest.mark.parametrize(("method", "options"), [
    ("hirescam", {"eigen_smooth": True}),
    ("layercam", {"fuse": "block2", "fusion": "max", "aug_smooth": True}),
    ("fullgrad", {}),
])
def test_the_cam_family_and_its_options(client: TestClient, web_models: dict[str, Any], method: str,
                                        options: dict[str, Any]) -> None:
    """The new CAMs run as jobs with their smoothing and fusion options, as explain() computes them."""
    job = explain_json(client, method=method, target=4, layer="block3", options=options)
    layer = "block3" if method != "fullgrad" else None
    alone = convscope.explain(web_models[DIGITS], "sample:cat", method, target=4, layer=layer, **options)
    np.testing.assert_allclose(npy(client, job), alone.map_array(0), rtol=1e-5, atol=1e-6)
    assert job["data"]["options"] == options


def test_a_layer_and_a_label_target(client: TestClient, web_models: dict[str, Any]) -> None:
    job = explain_json(client, method="gradcam", target="7", layer="block3")
    alone = convscope.explain(web_models[DIGITS], "sample:cat", "gradcam", target=7, layer="block3")
    assert job["data"]["layer"] == "block3" and job["data"]["target"] == 7
    np.testing.assert_allclose(npy(client, job), alone.map_array(0), rtol=1e-5, atol=1e-7)
    # a method without a layer ignores the page's layer choice
    assert explain_json(client, method="saliency", layer="block3")["data"]["layer"] is None


def test_faithfulness_numbers_are_those_of_convscope_evaluate(client: TestClient,
                                                               web_models: dict[str, Any]) -> None:
    data = explain_json(client, faithfulness=True)["data"]
    scores = evaluate(web_models[DIGITS], "sample:cat", "gradcam", target=3,
                      steps=FAITHFULNESS_STEPS).methods[0].per_image
    assert data["faithfulness_steps"] == FAITHFULNESS_STEPS
    assert data["deletion"] == pytest.approx(scores["deletion_auc"][0], abs=2e-4)
    assert data["insertion"] == pytest.approx(scores["insertion_auc"][0], abs=2e-4)


def test_methods_come_from_the_registry(client: TestClient) -> None:
    listed = client.get("/api/methods").json()["methods"]
    assert [m["name"] for m in listed] == method_names()
    assert listed == [describe(name) for name in method_names()]
    occlusion = {o["name"]: o for o in next(m for m in listed if m["name"] == "occlusion")["options"]}
    assert occlusion["window"] == {"name": "window", "type": "int", "default": None, "nullable": True,
                                   "choices": [], "low": 1, "high": 4096}
    assert next(m for m in listed if m["name"] == "gradcam")["needs_layer"] is True


def test_predict_is_the_task(client: TestClient, web_models: dict[str, Any], image_folder: Path) -> None:
    ref = f"folder:{image_folder.name}/noise.png"
    got = client.get("/api/predict", params={"image": ref, "k": 3}).json()
    want = predict(web_models[DIGITS], load_image(image_folder / "noise.png"), top=3)[0]
    assert got["model"] == DIGITS and got["predictions"] == [p.as_dict() for p in want]
    lite = client.get("/api/predict", params={"image": "sample:cat", "model": "efficientnet_lite0"}).json()
    assert lite["predictions"][0]["label"] == "Egyptian cat"


def test_the_page_holds_its_state_in_its_address(client: TestClient, image_folder: Path) -> None:
    ref = f"folder:{image_folder.name}/sub/gray.png"
    page = client.get("/explain", params={"image": ref, "target": "4", "methods": "gradcam,occlusion",
                                          "layer": "block3", "occlusion.window": "7", "faithfulness": "1"},
                      headers={"accept": "text/html"})
    assert page.status_code == 200
    setup = json.loads(re.search(r'<script type="application/json" id="ex-setup">(.*?)</script>',
                                 page.text, re.S).group(1))
    assert (setup["image"], setup["target"], setup["methods"], setup["layer"]) == (
        ref, 4, ["gradcam", "occlusion"], "block3")
    assert setup["options"] == {"gradcam": {}, "occlusion": {"window": 7}} and setup["faithfulness"]
    assert '<option value="block4">block4 (Sequential, 64x7x7)</option>' in page.text
    assert "pool" not in re.findall(r'<option value="([^"]+)">', page.text)  # 1x1: no map to show
    preview = client.get("/api/explain/image.png", params={"image": "sample:cat"})
    assert preview.status_code == 200 and Image.open(io.BytesIO(preview.content)).size == (448, 298)


# -- bad input: a 4xx with one line, the CLI's line where the CLI takes the same input -----------

@pytest.mark.parametrize(("body", "status", "cli"), [
    ({"method": "gradcamm"}, 400, ["--method", "gradcamm"]),
    ({"layer": "blokc4"}, 404, ["--layer", "blokc4"]),
    ({"target": 10}, 400, ["--target", "10"]),
    ({"target": "seven"}, 400, ["--target", "seven"]),
    ({"target": -1}, 400, None),
    ({"target": True}, 400, None),
    ({"target": [1, 2]}, 400, None),
    ({"options": {"steps": 3}}, 400, None),
    ({"options": {"relu": "yes"}}, 400, None),
    ({"options": {"aug_smooth": "yes"}}, 400, None),
    ({"method": "layercam", "options": {"fusion": "min"}}, 400, None),
    ({"method": "integrated_gradients", "options": {"steps": 0}}, 400, None),  # the spec's bound
    ({"model": "resnet9000"}, 404, None),
])
def test_bad_requests_get_the_clis_line(client: TestClient, capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path, body: dict[str, Any], status: int,
                                        cli: list[str] | None) -> None:
    message = refused(client.post("/api/explain", json={"image": "sample:cat", "method": "gradcam",
                                                         "target": 3, "wait": True} | body), status)
    if cli is not None:
        argv = ["explain", "sample:cat", "--model", DIGITS, "--out", str(tmp_path / "x.png"),
                *(["--method", "gradcam"] if "--method" not in cli else []), *cli]
        assert message == cli_error(capsys, argv)


def test_a_label_typo_gets_a_did_you_mean(client: TestClient) -> None:
    body = {"image": "sample:cat", "method": "gradcam", "model": "efficientnet_lite0",
            "target": "egyptian kat"}
    message = refused(client.post("/api/explain", json=body))
    assert "did you mean 'Egyptian cat'" in message


@pytest.mark.parametrize("body", [
    {"method": "gradcam"},  # no image
    {"image": "sample:cat", "method": "gradcam", "colour": "red"},  # unknown field
    {"image": "sample:cat", "method": "gradcam", "options": [1, 2]},
])
def test_malformed_bodies_are_refused(client: TestClient, body: dict[str, Any]) -> None:
    refused(client.post("/api/explain", json=body))


def test_a_body_that_is_not_json_is_refused(client: TestClient) -> None:
    refused(client.post("/api/explain", content=b"{not json", headers={"content-type": "application/json"}))


def image_refs(folder_id: str) -> list[tuple[str, int]]:
    return [("../../etc/passwd", 400), ("/etc/passwd", 400), (f"folder:{folder_id}/../../etc/passwd", 403),
            (f"folder:{folder_id}//etc/passwd", 403), (f"folder:{folder_id}/sub/../../../etc/passwd", 403),
            ("folder:nope/x.png", 404), ("upload:" + "0" * 64, 404), ("sample:nope", 404)]


def test_image_references_outside_the_folders_are_refused_everywhere(client: TestClient,
                                                                     image_folder: Path) -> None:
    html = {"accept": "text/html"}
    for ref, status in image_refs(image_folder.name):
        shown = refused(client.post("/api/explain", json={"image": ref, "method": "gradcam"}), status)
        assert shown.startswith("image ")  # names what it refused
        refused(client.get("/api/predict", params={"image": ref}), status)
        refused(client.get("/api/explain/image.png", params={"image": ref}), status)
        assert refused(client.get("/explain", params={"image": ref}, headers=html), status) == shown


@pytest.mark.parametrize(("params", "status", "needle"), [
    ({"methods": "gradcam,occlusoin"}, 400, "did you mean occlusion"),
    ({"layer": "blokc4"}, 404, "did you mean block4"),
    ({"target": "11"}, 400, "out of range"),
    ({"methods": "gradcam", "gradcam.steps": "3"}, 400, "has no option 'steps'"),
    ({"methods": "gradcam", "occlusion.window": "7"}, 400, "add it to methods="),
    ({"methods": "occlusion", "occlusion.window": "wide"}, 400, "must be an integer"),
    ({"model": "nope"}, 404, "is not served"),
])
def test_a_bad_address_is_a_clear_error_page(client: TestClient, params: dict[str, str], status: int,
                                             needle: str) -> None:
    reply = client.get("/explain", params={"image": "sample:cat"} | params, headers={"accept": "text/html"})
    assert needle in refused(reply, status) and "<html" in reply.text


def test_predict_refuses_a_bad_k(client: TestClient) -> None:
    for k in (0, 101):
        message = refused(client.get("/api/predict", params={"image": "sample:cat", "k": k}), 400)
        assert message == f"k={k}: must be >= 1 and <= 100"
    refused(client.get("/api/predict", params={"image": "sample:cat", "k": "many"}))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_uploads_are_refused_with_the_clis_line(make_app: Any, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty, bomb and non-image files get the line ``convscope predict FILE`` prints for the same
    file (the app's pixel limit set to the CLI's, PIL's default, so even the numbers agree)."""
    app = make_app(models=(DIGITS,), max_upload_bytes=4000, max_pixels=Image.MAX_IMAGE_PIXELS)
    monkeypatch.chdir(tmp_path)
    files = {"empty.png": b"", "bomb.png": png_claiming(100_000, 100_000),
             "notes.png": b"these are not pixels\n" * 10}
    with TestClient(app, base_url="http://127.0.0.1") as c:
        for name, data in files.items():
            message = refused(c.post("/api/upload", files={"file": (name, data, "image/png")}), 400)
            Path(name).write_bytes(data)
            assert message == cli_error(capsys, ["predict", name, "--model", DIGITS])
        bomb = c.post("/api/upload", files={"file": ("bomb.png", files["bomb.png"])})
        assert "decompression" in refused(bomb)
        over = refused(c.post("/api/upload", files={"file": ("big.png", b"\0" * 5000)}), 413)
        assert "4000" in over
        huge = refused(c.post("/api/upload", files={"file": ("huge.png", b"\0" * 200_000)}), 413)
        assert "limit" in huge
        picture = io.BytesIO()
        Image.fromarray(np.full((20, 20), 90, np.uint8)).save(picture, "PNG")
        ref = c.post("/api/upload", files={"file": ("ok.png", picture.getvalue())}).json()["image"]
        job = c.post("/api/explain", json={"image": ref, "method": "saliency", "wait": True}).json()
        assert job["status"] == "done"


def test_a_large_photo_is_drawn_shrunk(client: TestClient, web_models: dict[str, Any]) -> None:
    """The overlay of a photo larger than MAP_MAX_SIDE is drawn on the photo shrunk (a 12 MP
    upload took 20 s at full size); the map itself stays at input resolution."""
    from convscope.data import load_image as load
    from convscope.tasks.explain import photo_overlay
    from convscope.web.explainer import MAP_MAX_SIDE, explain_job

    photo = torch.nn.functional.interpolate(load("sample:cat")[None], size=(1200, 1804))[0]
    job = explain_job(web_models[DIGITS], photo, "gradcam", 3, "auto", {}, False, ("ref", "digest", "key"))
    result = job(lambda d, n: None)
    assert result.data["size"] == [1200, 1804] and result.data["overlay"] == "/api/explain/key/map.png"
    values = torch.from_numpy(np.load(io.BytesIO(result.files["map.npy"])))
    assert values.shape == (28, 28)
    picture = photo_overlay(photo, result.data["box"], values[None], MAP_MAX_SIDE)
    assert picture.size == (MAP_MAX_SIDE, round(1200 * MAP_MAX_SIDE / 1804))
