"""The layer and unit pages through HTTP: feature maps in the asked order, filters or why not,
lazy cached visualizations, the unit's mask, classes and top atlas images, and clear 404s."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from torch import nn

from convscope.methods.features import feature_maps
from convscope.model import Model, Preprocess
from convscope.tasks.inside import _pixels
from convscope.tasks.scan import scan_dataset
from convscope.web.app import create_app
from convscope.web.config import ServeConfig
from convscope.web.images import resolve_image
from tests.web.polling import wait_job

HTML = {"accept": "text/html"}


def _png(body: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(body))
    img.load()
    return img


def _tiles(html: str) -> list[tuple[int, float, float]]:
    return [(int(c), float(m), float(x)) for c, m, x in re.findall(
        r'class="tile fmap" data-channel="(\d+)" data-mean="([-\d.e]+)" data-max="([-\d.e]+)"', html)]


def test_feature_maps_are_every_channel_in_the_asked_order(client: TestClient, app: Any,
                                                          web_models: dict[str, Model]) -> None:
    model = web_models["digits_cnn"]
    image = resolve_image(app.state.cs, "sample:coffee")
    truth = feature_maps(model, _pixels(model, image)[1], "block2")
    means, maxes = truth.mean[0].tolist(), truth.max[0].tolist()
    for sort, key in (("mean", means), ("max", maxes), ("index", None)):
        page = client.get(f"/layers/block2?image=sample:coffee&sort={sort}", headers=HTML)
        assert page.status_code == 200
        tiles = _tiles(page.text)
        channels = [c for c, _, _ in tiles]
        assert sorted(channels) == list(range(32))
        expect = list(range(32)) if key is None else sorted(range(32), key=lambda c: -key[c])
        assert channels == expect, sort
        for c, m, x in tiles:
            assert m == pytest.approx(means[c], abs=1e-3) and x == pytest.approx(maxes[c], abs=1e-3)
    listed = client.get("/api/layers/block2/featuremaps?image=sample:coffee&sort=max").json()
    assert [r["channel"] for r in listed["channels"]] == sorted(range(32), key=lambda c: -maxes[c])
    assert listed["shape"] == [32, 14, 14]


def test_a_feature_map_tile_is_its_channel_colour_mapped(client: TestClient, app: Any,
                                                         web_models: dict[str, Model]) -> None:
    model = web_models["digits_cnn"]
    image = resolve_image(app.state.cs, "sample:coffee")
    truth = feature_maps(model, _pixels(model, image)[1], "block2").maps[0, 5]
    tile = client.get("/api/layers/block2/featuremap/5.png?image=sample:coffee")
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    px = np.asarray(_png(tile.content).convert("RGB")).astype(float)
    assert px.shape == (14 * 6, 14 * 6, 3)  # 96 px tiles: 6x nearest-neighbour
    cells = px[::6, ::6].sum(-1)  # brighter viridis = higher activation: same ranking of cells
    hi = np.unravel_index(int(truth.argmax()), tuple(truth.shape))
    lo = np.unravel_index(int(truth.argmin()), tuple(truth.shape))
    assert cells[hi] == cells.max() and cells[lo] == cells.min()


def test_filters_are_drawn_for_a_conv_and_explained_otherwise(client: TestClient) -> None:
    conv = client.get("/layers/block1.0", headers=HTML).text
    assert 'id="filters"' in conv and 'src="data:image/png;base64,' in conv
    assert _png(client.get("/api/layers/block1.0/filters.png").content).width > 0
    relu = client.get("/layers/block1.2", headers=HTML).text
    assert "Filters cannot be shown for this layer" in relu and "not a Conv2d" in relu
    answer = client.get("/api/layers/block1.2/filters.png")
    assert answer.status_code == 404 and "not a Conv2d" in answer.json()["error"]


def test_every_channel_gets_a_lazy_visualization_tile(client: TestClient) -> None:
    html = client.get("/layers/block3", headers=HTML).text
    assert len(re.findall(r'class="tile vis" data-channel="\d+"', html)) == 64
    assert 'src="/static/layer.js"' in html and 'data-layer="block3"' in html


def test_a_visualization_is_a_job_then_a_cached_file(client: TestClient) -> None:
    url = "/api/layers/block2/7/visualization?steps=6&seed=3"
    job = wait_job(client, client.get(url).json())
    assert job["status"] == "done", job
    assert job["data"]["channel"] == 7 and job["data"]["steps"] == 6 and job["data"]["seed"] == 3
    first = _png(client.get(job["files"]["visualization.png"]).content)
    assert first.size == (28, 28)  # the model's own input size (under the 96 px default)
    again = client.get(url).json()  # answered from the cache (its time: benchmarks/web.py)
    picture = client.get(again["files"]["visualization.png"])
    assert again["status"] == "done" and again["message"] == "cached", again
    assert picture.content == client.get(job["files"]["visualization.png"]).content
    page = client.get("/layers/block2?steps=6&seed=3", headers=HTML).text  # a second visit:
    assert re.search(r'data-channel="7" data-state="done">\s*<a href="[^"]*steps=6[^"]*">'  # drawn
                     rf'<img alt="[^"]*" src="{job["files"]["visualization.png"]}"', page)
    assert page.count('data-state="done"') == 1
    unit = client.get("/layers/block2/7?steps=6", headers=HTML).text
    assert unit.count(job["files"]["visualization.png"]) == 1  # seed 3 of the unit page's four
    other = client.get("/api/layers/block2/7/visualization?steps=6&seed=4").json()
    assert other["key"] != job["key"]  # keyed by the settings
    wait_job(client, other)


def test_bad_visualization_settings_are_refused(client: TestClient) -> None:
    answer = client.get("/api/layers/block2/7/visualization?steps=0")
    assert answer.status_code == 400 and "steps=0" in answer.json()["error"]
    page = client.get("/layers/block2?size=4", headers=HTML)
    assert page.status_code == 400 and "size=4: must be &gt;= 8 and &lt;= 512" in page.text


@pytest.mark.parametrize("url", ["/layers/blok2", "/api/layers/blok2/featuremaps",
                                 "/api/layers/blok2/1/visualization"])
def test_an_unknown_layer_is_a_404_with_the_closest_names(client: TestClient, url: str) -> None:
    answer = client.get(url, headers=HTML if not url.startswith("/api") else {})
    assert answer.status_code == 404
    assert "did you mean block2" in answer.text


@pytest.mark.parametrize("channel", ["32", "999", "-1", "x"])
def test_an_out_of_range_channel_is_a_404_that_says_the_range(client: TestClient, channel: str) -> None:
    page = client.get(f"/layers/block2/{channel}", headers=HTML)
    assert page.status_code == 404 and "has 32 channels, 0..31" in page.text
    api = client.get(f"/api/layers/block2/{channel}/mask.png")
    assert api.status_code == 404 and "0..31" in api.json()["error"]


def test_a_bad_sort_or_image_is_a_clear_4xx(client: TestClient) -> None:
    assert client.get("/layers/block2?sort=median", headers=HTML).status_code == 400
    bad = client.get("/api/layers/block2/featuremaps?image=folder:nope/../../etc/passwd")
    assert 400 <= bad.status_code < 500 and "error" in bad.json()


def test_the_unit_page_shows_seeds_mask_and_asks_for_classes(client: TestClient) -> None:
    page = client.get("/layers/block3/5?image=sample:coffee", headers=HTML)
    assert page.status_code == 200
    assert len(re.findall(r'class="tile vis" data-channel="5" data-seed="\d"', page.text)) == 4
    assert 'src="/api/layers/block3/5/mask.png?image=sample%3Acoffee&amp;model=digits_cnn"' in page.text
    assert 'id="no-atlas"' in page.text
    mask = _png(client.get("/api/layers/block3/5/mask.png?image=sample:coffee").content)
    assert mask.width > 3 * 28


def test_classes_come_from_the_weights_above_an_affine_head(client: TestClient,
                                                            web_models: dict[str, Model]) -> None:
    job = wait_job(client, client.get("/api/layers/block4/9/classes?k=10").json())
    assert job["status"] == "done" and job["data"]["method"] == "weights"
    weights = web_models["digits_cnn"].net.fc.weight[:, 9].detach()
    order = weights.argsort(descending=True).tolist()
    # supported: the positive weights, largest first; opposed: the negative ones, most negative first
    assert [r["index"] for r in job["data"]["classes"]] == [i for i in order if weights[i] > 0]
    assert [r["index"] for r in job["data"]["opposed"]] == [i for i in reversed(order) if weights[i] < 0]
    got = {r["index"]: r["score"] for r in job["data"]["classes"] + job["data"]["opposed"]}
    assert torch.allclose(torch.tensor([got[i] for i in range(10)]), weights, atol=1e-5)


def test_classes_below_a_nonlinear_head_come_from_gradients(client: TestClient) -> None:
    job = wait_job(client, client.get("/api/layers/block2/3/classes?image=sample:coffee&k=3").json())
    assert job["status"] == "done" and job["data"]["method"] == "gradient"
    assert "max_pool2d" in job["data"]["reason"] and len(job["data"]["classes"]) == 3


class TwiceNet(nn.Module):
    """One ReLU module called twice: its outputs are ``act:0`` and ``act:1``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv(self.act(self.stem(x))))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def twice_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    model = Model(TwiceNet().eval(), preprocess=Preprocess(input_size=(16, 16)), name="twice")
    app = create_app(ServeConfig(models=["twice"], cache_dir=tmp_path_factory.mktemp("cache")),
                     models=[("twice", model)])
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c
    app.state.cs.close()


def test_dotted_and_numbered_layer_names_work_in_urls(twice_client: TestClient) -> None:
    for name, channels in (("stem.0", 4), ("act:0", 4), ("act:1", 6)):
        page = twice_client.get(f"/layers/{name}", headers=HTML)
        assert page.status_code == 200, page.text
        assert len(_tiles(page.text)) == channels
        assert twice_client.get(f"/layers/{name}/1", headers=HTML).status_code == 200
    quoted = twice_client.get("/layers/act%3A1/5", headers=HTML)
    assert quoted.status_code == 200
    bare = twice_client.get("/layers/act", headers=HTML)
    assert bare.status_code == 404 and "'act:0', 'act:1'" in bare.text.replace("&#39;", "'")


@pytest.fixture(scope="module")
def atlas_client(web_models: dict[str, Model], tmp_path_factory: pytest.TempPathFactory,
                 image_folder: Path) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / f"d{i}.png")
    atlas_dir = tmp_path_factory.mktemp("atlases") / "digits"
    scan_dataset(web_models["digits_cnn"], folder, atlas_dir, layers=["block3"], k=3, batch_size=5)
    app = create_app(ServeConfig(models=["digits_cnn"], atlases=[atlas_dir],
                                 cache_dir=tmp_path_factory.mktemp("cache")),
                     models=[("digits_cnn", web_models["digits_cnn"])])
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c
    app.state.cs.close()


def test_the_unit_page_shows_the_atlas_top_images_with_their_patches(atlas_client: TestClient) -> None:
    page = atlas_client.get("/layers/block3/2", headers=HTML).text
    assert 'data-url="/api/layers/block3/2/top?atlas=digits' in page
    top = atlas_client.get("/api/layers/block3/2/top?atlas=digits&k=3").json()["top"]
    atlas = atlas_client.app.state.cs.atlas("digits")  # type: ignore[attr-defined]
    records = atlas.top("block3", 2, 3)
    assert [t["index"] for t in top] == [r.index for r in records]
    assert [t["value"] for t in top] == [round(r.value, 4) for r in records]
    for t in top:
        assert t["patch"].startswith("data:image/png;base64,") and t["image"] == f"atlas:digits/{t['index']}"
    other_layer = atlas_client.get("/layers/block2/2", headers=HTML).text
    assert 'id="no-atlas"' in other_layer  # the atlas did not scan block2
    refused = atlas_client.get("/api/layers/block2/2/top?atlas=digits")
    assert refused.status_code == 404 and "block2" in refused.json()["error"]




def test_a_folder_image_that_changed_gets_its_new_feature_maps(client: TestClient, app: Any,
                                                               image_folder: Path) -> None:
    """Activations are remembered by the image's pixels, not only its reference."""
    path = image_folder / "changing.png"
    ref = f"folder:{image_folder.name}/changing.png"
    Image.new("L", (28, 28), 0).save(path)
    try:
        dark = client.get("/api/layers/block2/featuremaps", params={"image": ref, "sort": "index"}).json()
        rng = np.random.default_rng(1)
        Image.fromarray(rng.integers(0, 255, (30, 28), dtype=np.uint8)).save(path)
        noisy = client.get("/api/layers/block2/featuremaps", params={"image": ref, "sort": "index"}).json()
        assert [c["mean"] for c in dark["channels"]] != [c["mean"] for c in noisy["channels"]]
    finally:
        path.unlink()


def test_the_unit_page_suits_a_one_channel_model(make_app: Any, digits: Any) -> None:
    """digits_cnn's unit page opened on a cat photo, drew coloured visualizations of a gray model
    and a mask figure 28 px per panel (captions cut): now a digit of its atlas, gray pictures,
    panels at least 224 px."""
    with TestClient(make_app(models=("digits_cnn",), **digits.config()), base_url="http://127.0.0.1") as c:
        page = c.get("/layers/block3/5", headers=HTML).text
        assert "image=atlas%3Adigits%2F0" in page and "sample%3Acat" not in page
        job = wait_job(c, c.get("/api/layers/block3/5/visualization?steps=4").json())
        assert job["status"] == "done", job
        png = c.get(job["files"]["visualization.png"]).content
        picture = np.asarray(_png(png).convert("RGB")).astype(int)
        assert picture.std() > 0 and (picture == picture[..., :1]).all()  # gray: R = G = B
        figure = _png(c.get("/api/layers/block3/5/mask.png").content)
        assert figure.width >= 3 * 224
