"""Notebook display: result objects answer ``_repr_png_`` / ``_repr_html_`` with real pictures.

No IPython is needed: the methods return bytes and strings, and these tests decode the PNG (from
``_repr_png_`` and from the base64 data URI inside the HTML) and look at its pixels.
"""

from __future__ import annotations

import base64
import io
import re
from html import escape, unescape

import numpy as np
import pytest
import torch
from PIL import Image

from convscope import evaluate, explain, report
from convscope.methods.features import channel
from convscope.model import Model
from convscope.render import png_bytes
from convscope.render.notebook import (
    figure_html,
    page_iframe,
    sample_grid,
    table_html,
)
from convscope.render.plots import class_colors
from convscope.tasks import inside
from convscope.tasks.explain import Explanation
from convscope.tasks.project import Points, embedding_map
from convscope.tasks.synthesis import inversion
from convscope.tasks.visualize import visualization

pytestmark = pytest.mark.usefixtures("one_thread")

PNG_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def decode(data: bytes) -> np.ndarray:
    """PNG bytes -> (H, W, 3) uint8; fails unless they are a real PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def html_pictures(html: str) -> list[np.ndarray]:
    """Every inline PNG of an HTML fragment, decoded."""
    return [decode(base64.b64decode(m)) for m in PNG_URI.findall(html)]


def assert_drawn(pixels: np.ndarray, min_size: tuple[int, int] = (16, 16)) -> None:
    """A picture of at least ``min_size`` (h, w) with real content: many distinct colours and
    no single colour covering (almost) everything."""
    assert pixels.shape[0] >= min_size[0] and pixels.shape[1] >= min_size[1]
    flat = pixels.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    assert len(colours) > 20 and counts.max() < 0.9 * len(flat)


def images(n: int = 2, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


# --- render/notebook.py ---------------------------------------------------------------------

def test_png_bytes_round_trip_a_tensor() -> None:
    picture = images(1)[0]
    pixels = decode(png_bytes(picture))
    assert pixels.shape == (16, 16, 3)
    assert np.abs(pixels / 255.0 - picture.permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6


def test_figure_embeds_the_picture_and_escapes_the_caption() -> None:
    picture = Image.fromarray((np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8))
    html = figure_html(picture, "a <b> & c")
    [pixels] = html_pictures(html)
    assert pixels.shape == (40, 60, 3) and (pixels == np.asarray(picture)).all()
    assert "a &lt;b&gt; &amp; c" in html and "<b>" not in html
    assert "<style" not in html and "<script" not in html  # nothing leaks into the notebook


def test_large_pictures_are_shrunk_for_the_notebook() -> None:
    big = Image.new("RGB", (3000, 1500), "red")
    [pixels] = html_pictures(figure_html(big))
    assert pixels.shape == (512, 1024, 3)


def test_table_aligns_numbers_and_rounds_floats() -> None:
    html = table_html(["method", "auc"], [["gradcam", 0.123456], ["<x>", None]], "scores")
    assert "0.1235" in html and "&lt;x&gt;" in html and "<caption" in html
    assert re.search(r'text-align:right[^>]*>0\.1235<', html)


def test_page_iframe_keeps_the_page_in_its_own_document() -> None:
    page = "<html><head><style>body{color:red}</style></head><body><p class=\"x\">hi & bye</p></body></html>"
    html = page_iframe(page, height=300)
    assert html.startswith("<iframe srcdoc=\"") and "height:300px" in html
    srcdoc = re.search(r'srcdoc="([^"]*)"', html)
    assert srcdoc is not None and unescape(srcdoc.group(1)) == page


def test_sample_grid_says_how_many_samples_it_leaves_out() -> None:
    tiles = [Image.new("RGB", (16, 16), c) for c in ("red", "green")]
    grid = sample_grid(tiles, ["a", "b"], "title", total=5)
    assert grid.width >= 2 * 224  # small tiles are enlarged to be seen
    with_note = np.asarray(grid)
    without = np.asarray(sample_grid(tiles, ["a", "b"], "title"))
    assert with_note.shape == without.shape and (with_note != without).any()


# --- result objects ---------------------------------------------------------------------------

def test_explanation_shows_a_captioned_grid_of_overlays(tiny: Model) -> None:
    result = explain(tiny, tiny.preprocess(images(3)), "gradcam", target=[0, 1, 2])
    png = decode(result._repr_png_())
    assert_drawn(png, (224, 3 * 224))
    html = result._repr_html_()
    [inline] = html_pictures(html)
    assert inline.shape == png.shape and (inline == png).all()
    assert 'alt="gradcam, layer relu2' in html
    assert escape(f"layer relu2: {result.layer_reason}") in html
    assert result.picture(max_samples=1).width < png.shape[1]


def test_explanation_grid_shows_each_samples_overlay(tiny: Model) -> None:
    """The tiles are the overlays themselves: the first overlay, enlarged, is in the picture."""
    result = explain(tiny, tiny.preprocess(images(1)), "saliency")
    grid = np.asarray(result.picture())
    tile = np.asarray(result.overlay(0).resize((224, 224), Image.Resampling.NEAREST))
    found = [(y, x) for y in range(grid.shape[0] - 223) for x in range(grid.shape[1] - 223)
             if (grid[y, x] == tile[0, 0]).all() and (grid[y:y + 224, x:x + 224] == tile).all()]
    assert found


def test_explanation_of_non_image_inputs_has_a_table_and_no_png() -> None:
    values = torch.ones(2, 5)
    result = Explanation("saliency", values, values, None, torch.tensor([1, 0]), ["one", "zero"],
                         torch.tensor([0.5, 0.25]), None, 0.01, False)
    assert result._repr_png_() is None
    html = result._repr_html_()
    assert "<table" in html and "one" in html and "not images" in html and "[2, 5]" in html


def test_report_is_framed_html_with_every_method(tiny: Model) -> None:
    result = report(tiny, list(images(1)), "gradcam,saliency", faithfulness_steps=2)
    html = result._repr_html_()
    assert html.startswith("<iframe srcdoc=")
    page = unescape(re.search(r'srcdoc="([^"]*)"', html).group(1))  # type: ignore[union-attr]
    assert page == result.html()
    pictures = html_pictures(page)
    assert len(pictures) >= 3 and "gradcam" in page and "saliency" in page
    assert_drawn(pictures[-1])


def test_evaluation_is_a_table_of_the_means(tiny: Model) -> None:
    result = evaluate(tiny, list(images(2)), "gradcam,saliency", steps=4)
    html = result._repr_html_()
    assert html.count("<tr>") == 3 and "deletion_auc (mean)" in html
    means = result.methods[0].means()["deletion_auc"]
    assert f">{means:.4g}<" in html


def test_view_and_visualization_and_synthesis_show_their_pictures(tiny: Model) -> None:
    view = inside.featuremaps(tiny, images(1)[0], "conv1", top=4)
    viz = visualization(tiny, channel("conv2", 0), steps=2, size=16, transforms="none")
    made = inversion(tiny, images(1, 16)[0], ["conv1"], steps=2, size=16)
    for result, picture in ((view, view.picture), (viz, viz.picture), (made, made.picture)):
        png = decode(result._repr_png_())  # type: ignore[attr-defined]
        expected = np.asarray(picture if isinstance(picture, Image.Image)
                              else Image.open(io.BytesIO(png_bytes(picture))).convert("RGB"))
        assert (png == expected).all()
        [inline] = html_pictures(result._repr_html_())  # type: ignore[attr-defined]
        assert (inline == png).all()
    assert_drawn(decode(view._repr_png_()))
    assert viz.headline.split(";")[0] in viz._repr_html_()


def test_embedding_map_draws_the_scatter() -> None:
    rng = np.random.default_rng(0)
    n = 30
    labels = np.repeat(np.arange(3), 10)
    emb = torch.from_numpy(rng.normal(size=(n, 6)).astype(np.float32)) + torch.from_numpy(labels)[:, None] * 4
    thumbs = (rng.random((n, 8, 8, 3)) * 255).astype(np.uint8)
    points = Points(emb, labels, labels.copy(), thumbs, [f"{i}.png" for i in range(n)],
                    ["a", "b", "c"], "layer4", 0)
    made = embedding_map(points, "pca")
    png = decode(made._repr_png_())
    assert png.shape == (720, 900, 3)
    for colour in class_colors(3):  # every class's points are drawn in its colour
        rgb = (np.asarray(colour[:3]) * 255).round()
        assert (np.abs(png.astype(int) - rgb).max(axis=2) <= 2).sum() > 50
    assert len(np.unique(png.reshape(-1, 3), axis=0)) > 200  # and the thumbnails
    html = made._repr_html_()
    assert "pca map of 30 images at layer4" in html and "5-NN label accuracy" in html
    assert html_pictures(html)[0].shape == png.shape


def test_a_large_photo_is_drawn_shrunk_like_the_full_overlay(tiny: Model) -> None:
    """The grid draws on the photo shrunk first (fast for large photos): the same picture as the
    full-size overlay shrunk afterwards, with the crop the model saw in the same place."""
    ys, xs = torch.meshgrid(torch.linspace(0, 3, 90), torch.linspace(0, 5, 150), indexing="ij")
    photo = torch.stack([ys.sin(), xs.cos(), (xs + ys).sin()]) * 0.4 + 0.5  # smooth: resampling agrees
    result = explain(tiny, [photo], "gradcam", target=1)
    full = result.overlay(0).resize((60, 36), Image.Resampling.BOX)
    small = result.overlay(0, max_side=60)
    assert small.size == (60, 36)
    diff = np.abs(np.asarray(small, dtype=float) - np.asarray(full, dtype=float))
    assert diff.mean() < 3 and np.percentile(diff, 90) < 8
    # the model saw the centre 90x90 (columns 12-48 of 60): outside it the photo is shaded to half
    shrunk = torch.nn.functional.interpolate(photo[None], size=(36, 60), mode="bilinear", antialias=True)
    shaded = (shrunk[0].permute(1, 2, 0).numpy() * 0.5 * 255)
    edges = np.r_[0:11, 49:60]
    assert np.abs(np.asarray(small, dtype=float)[:, edges] - shaded[:, edges]).max() <= 2
    assert np.abs(np.asarray(small, dtype=float)[:, 20:40] - shaded[:, 20:40]).mean() > 20
