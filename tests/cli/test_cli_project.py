"""``convscope project``: maps from a dataset embedded on the fly and from an atlas of a scan."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.tasks import project as project_task
from tests.cli.runner import run

FACTORY = """
import torch
from torch import nn

def make():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 5, stride=4, padding=2), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2)).eval()
"""


def test_dataset_map_with_pca_and_3d_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out, js = tmp_path / "map.png", tmp_path / "map3d.json"
    code, stdout, err = run(capsys, "project", "--dataset", "mnist5k", "--model", "digits_cnn",
                            "--method", "pca", "--limit", "300", "--out", str(out),
                            "--3d-json", str(js), "--json", "--thumbnails", "20")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["points"] == 300 and summary["skipped"] == 0 and summary["layer"] == "block4"
    assert summary["knn_accuracy"] > 0.6  # even a linear map of digits_cnn features keeps digits apart
    with Image.open(out) as img:
        assert img.size == (1200, 1000)
    data = json.loads(js.read_text())
    assert len(data["points"]) == 300 and data["class_names"] == [str(d) for d in range(10)]
    assert {p["label"] for p in data["points"]} == set(range(10))  # evenly spread over the file
    assert all(set(p) == {"x", "y", "z", "label", "prediction", "source"} for p in data["points"])


def test_atlas_map_skips_unreadable_images(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "projmodel.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    for cls in ("dark", "light"):
        folder = tmp_path / "images" / cls
        folder.mkdir(parents=True)
        for i in range(6):
            base = 40 if cls == "dark" else 200
            pixels = rng.integers(base, base + 50, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    (tmp_path / "images" / "dark" / "broken.png").write_bytes(b"not a png")
    atlas = tmp_path / "atlas"
    code, _, err = run(capsys, "scan", str(tmp_path / "images"), "--atlas", str(atlas),
                       "--model", "projmodel:make", "--layers", "3", "--batch-size", "4")
    assert code == 0, err
    out = tmp_path / "atlas_map.png"
    seen: dict = {}
    draw = project_task.embedding_scatter

    def spy(coords, labels, **options):  # type: ignore[no-untyped-def]
        seen.update(options, labels=labels)
        return draw(coords, labels, **options)

    monkeypatch.setattr(project_task, "embedding_scatter", spy)
    code, stdout, err = run(capsys, "project", "--atlas", str(atlas), "--method", "pca",
                            "--color", "prediction", "--out", str(out), "--json")
    assert code == 0, err
    # predictions index the model's 2 classes, not the folder's "dark" / "light": the legend
    # names the model's classes and no point is called misclassified by comparing the two
    assert seen["class_names"] != ["dark", "light"] and (seen["labels"] == -1).all()
    summary = json.loads(stdout)
    assert summary["points"] == 12 and summary["skipped"] == 1 and summary["layer"] == "3"
    assert summary["knn_accuracy"] == 1.0  # dark and light images are far apart in any embedding
    assert out.is_file()


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "project", "--atlas", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png"))
    assert code == 2 and "is not an atlas" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "project", "--dataset", str(tmp_path / "missing"), "--out", "x.png")
    assert code == 2 and "not an existing folder" in err
    code, _, err = run(capsys, "project", "--dataset", "mnist5k", "--atlas", "a", "--out", "x.png")
    assert code == 2 and "not allowed with" in err


def test_embedding_scatter_draws_classes_thumbnails_and_refuses_bad_input() -> None:
    import torch

    from convscope.errors import BadArgument
    from convscope.render.plots import class_colors, embedding_scatter

    coords = torch.tensor([[0.0, 0.0], [10.0, 10.0], [0.0, 10.0], [float("nan"), 1.0]])
    labels = torch.tensor([0, 1, 1, 0])
    plain = embedding_scatter(coords, labels, class_names=["a", "b"], size=(400, 300),
                              point_size=400)
    assert plain.size == (400, 300) and plain.mode == "RGB"
    pixels = np.asarray(plain).reshape(-1, 3).astype(int)
    for colour in class_colors(2):  # both class colours are on the picture
        target = np.round(np.asarray(colour) * 255).astype(int)
        assert (np.abs(pixels - target).sum(1) < 10).any()
    thumbs = torch.zeros(4, 1, 8, 8)
    thumbs[:, :, 2:6, 2:6] = 1.0  # white squares on black
    with_thumbs = embedding_scatter(coords, labels, predictions=torch.tensor([0, 0, 1, 0]),
                                    color_by="prediction", thumbnails=thumbs, size=(400, 300))
    assert (np.asarray(with_thumbs) == 0).all(2).sum() > (np.asarray(plain) == 0).all(2).sum()
    with pytest.raises(BadArgument, match="need \\(N, 2\\)"):
        embedding_scatter(torch.zeros(4, 3), labels)
    with pytest.raises(BadArgument, match="do not match"):
        embedding_scatter(coords, labels[:2])
    with pytest.raises(BadArgument, match="no predictions"):
        embedding_scatter(coords, labels, color_by="prediction")
