"""``concepts()``: a dataset or images in, concepts with maps, patches, importances and files out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import convscope
from convscope.data.datasets import open_dataset
from convscope.errors import BadArgument
from convscope.model.receptive import field_geometry
from tests.model_safety import assert_unharmed, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits() -> convscope.Model:
    return convscope.load_model("digits_cnn")


@pytest.fixture(scope="module")
def found(digits: convscope.Model) -> convscope.Concepts:
    before = snapshot(digits)
    result = convscope.concepts(digits, "mnist5k", k=4, label=3, max_images=20, target=3,
                                designs=8, patches=5)
    assert_unharmed(digits, before)
    return result


def test_a_labelled_sample_of_the_dataset_is_factorized(found: convscope.Concepts) -> None:
    ds = open_dataset("mnist5k")
    indices = [int(s.split(":")[1]) for s in found.sources]
    assert len(set(indices)) == 20 and all(ds.load(i).label == 3 for i in indices)
    assert found.layer == "block4" and found.k == 4 and found.targets == [3] * 20
    assert found.bases.shape == (4, 64) and found.maps.shape == (20, 4, 7, 7)
    assert found.heatmaps.shape == (20, 4, 28, 28) and found.pixels.shape == (20, 3, 28, 28)
    assert found.importances.tolist() == sorted(found.importances.tolist(), reverse=True)
    assert torch.allclose(found.importances, found.image_importances.mean(0))
    assert 0 < found.relative_error < 1


def test_top_patches_are_the_fields_of_each_concepts_peaks(digits, found: convscope.Concepts) -> None:
    geometry = field_geometry(digits, found.layer)
    for j, row in enumerate(found.patches):
        assert len(row) == 5
        assert [p.value for p in row] == sorted((p.value for p in row), reverse=True)
        assert row[0].value == pytest.approx(float(found.maps[:, j].max()))
        for p in row:
            peak = int(found.maps[p.image, j].flatten().argmax())
            assert p.box == geometry.box(peak // 7, peak % 7)
            assert torch.equal(p.crop, found.pixels[p.image][..., p.box.slices[0], p.box.slices[1]])


def test_save_writes_gallery_json_and_html(found: convscope.Concepts, tmp_path: Path) -> None:
    paths = found.save(tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert [c["importance"] for c in data["concepts"]] == pytest.approx(found.importances.tolist())
    assert data["images"] == 20 and len(data["concepts"][0]["patches"]) == 5
    with Image.open(paths["png"]) as picture:
        assert picture.width > 9 * 48 and picture.height > 4 * 48  # 4 images + 5 patches, 4 rows
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and "importance (sobol)" in html


def test_model_inputs_and_gradient_importance(digits, found: convscope.Concepts) -> None:
    x = digits.normalize(found.pixels[:6])
    again = convscope.concepts(digits, x, k=3, importance="gradient", target=3, patches=2)
    assert again.maps.shape == (6, 3, 7, 7) and torch.allclose(again.pixels, found.pixels[:6], atol=1e-6)
    assert torch.allclose(again.image_importances.sum(1), torch.ones(6), atol=1e-5)


def test_a_label_filter_needs_a_dataset(digits, found: convscope.Concepts) -> None:
    with pytest.raises(BadArgument, match="label= filters a dataset"):
        convscope.concepts(digits, list(found.pixels[:3]), label=3)
