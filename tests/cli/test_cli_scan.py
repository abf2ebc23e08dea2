"""``convscope scan | top | neighbors`` on a small image folder with a tiny factory model."""

from __future__ import annotations

import json
import textwrap
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.cli import main as cli_main
from tests.cli.runner import run

FACTORY = """
import torch
from torch import nn

def make():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 5, stride=4, padding=2), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).eval()
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_scan")
    (root / "scanmodel.py").write_text(textwrap.dedent(FACTORY))
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


SCAN = ("--model", "scanmodel:make", "--layers", "1,3", "--k", "3", "--batch-size", "3",
        "--chunk-size", "4")


@pytest.fixture(scope="module")
def atlas(setup: Path) -> Path:
    """The folder scanned once (the tests below scan it again: a finished atlas is reused)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(setup))
        assert cli_main.main(["scan", str(setup / "images"), "--atlas", str(setup / "atlas"), *SCAN]) == 0
    return setup / "atlas"


@pytest.fixture
def on_path(setup: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(setup))
    return setup


def test_scan_then_top_and_neighbors(capsys, on_path: Path, atlas: Path) -> None:
    folder = on_path / "images"
    code, out, err = run(capsys, "scan", str(folder), "--atlas", str(atlas), *SCAN)
    assert code == 0, err
    assert "7 of 8 images scanned" in out and "skipped 1 unreadable" in out and "broken.jpg" in out
    code, out, _ = run(capsys, "scan", str(folder), "--atlas", str(atlas), *SCAN, "--json")
    data = json.loads(out)
    assert code == 0 and data["scanned"] == 7 and data["channels"] == {"1": 4, "3": 6}
    assert [Path(s["source"]).name for s in data["skipped"]] == ["broken.jpg"]

    png = on_path / "top.png"
    code, out, err = run(capsys, "top", "--atlas", str(atlas), "--layer", "3", "--channel", "2",
                         "--out", str(png), "--json")
    assert code == 0, err
    top = json.loads(out)["top"]
    assert [t["rank"] for t in top] == [0, 1, 2] and png.is_file()
    assert all(a["value"] >= b["value"] for a, b in pairwise(top))
    box = top[0]["box"]  # layer 3 of this net sees 13x13 px + stride 8 (measured, clipped)
    assert 0 <= box[0] < box[2] <= 224 and 0 <= box[1] < box[3] <= 224 and box[2] - box[0] <= 21
    code, _, _ = run(capsys, "top", "--atlas", str(atlas), "--layer", "3", "--channel", "0",
                     "--full", "--out", str(png))
    assert code == 0

    code, out, _ = run(capsys, "neighbors", "--index", "1", "--atlas", str(atlas), "--k", "3",
                       "--json", "--out", str(on_path / "nn.png"))
    found = json.loads(out)["neighbors"]
    assert code == 0 and len(found) == 3 and (on_path / "nn.png").is_file()
    assert all(Path(n["source"]).name.startswith("p") and n["index"] != 1 for n in found)
    assert all(a["distance"] <= b["distance"] for a, b in pairwise(found))
    assert all(n["label"] is None and n["label_index"] is None for n in found)  # a flat folder
    query = folder / "p3.png"
    code, out, _ = run(capsys, "neighbors", str(query), "--atlas", str(atlas), "--metric", "l2",
                       "--layer", "1", "--json")
    found = json.loads(out)["neighbors"]
    assert code == 0 and found[0]["source"] == str(query) and found[0]["distance"] < 1e-4


def test_neighbors_json_names_the_labels_of_a_labelled_folder(capsys, on_path: Path) -> None:
    folder = on_path / "labelled"
    rng = np.random.default_rng(1)
    for name in ("cats", "dogs"):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    atlas = on_path / "labelled_atlas"
    assert run(capsys, "scan", str(folder), "--atlas", str(atlas), *SCAN)[0] == 0
    code, out, err = run(capsys, "neighbors", "--index", "0", "--atlas", str(atlas), "--k", "5", "--json")
    found = json.loads(out)["neighbors"]
    assert code == 0 and len(found) == 5, err
    for n in found:
        assert n["label"] == Path(n["source"]).parent.name
        assert n["label_index"] == ["cats", "dogs"].index(n["label"])


def test_errors_are_one_line(capsys, on_path: Path, atlas: Path) -> None:
    code, _, err = run(capsys, "neighbors", "--atlas", str(atlas))
    assert code == 2 and "IMAGE or --index" in err
    code, _, err = run(capsys, "top", "--atlas", str(on_path / "nowhere"), "--layer", "1",
                       "--channel", "0")
    assert code == 2 and "not an atlas" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "scan", str(on_path / "images"), "--model", "scanmodel:make",
                       "--layers", "1,3", "--atlas", str(atlas), "--k", "5")
    assert code == 2 and "different scan" in err
    code, _, err = run(capsys, "top", "--atlas", str(atlas), "--layer", "3", "--channel", "99")
    assert code == 2 and "outside layer" in err
    code, _, err = run(capsys, "neighbors", "--index", "0", "--atlas", str(atlas))  # broken.jpg
    assert code == 2 and "skipped" in err
    code, _, err = run(capsys, "scan", str(on_path / "images"), "--model", "scanmodel:make",
                       "--atlas", str(on_path / "zero"), "--batch-size", "0")
    assert code == 2 and "--batch-size 0: " in err and len(err.strip().splitlines()) == 1


def test_scan_applies_the_cam_head(on_path: Path, tmp_path: Path) -> None:
    """``--cam-head`` puts the head on the scanned model: a head whose bias picks class 3 (the
    bare model has classes 0-2 only) makes every prediction of the atlas 3."""
    import torch

    from convscope.data.atlas import Atlas
    from convscope.tasks.retrofit import CAM_HEAD_FORMAT

    head = tmp_path / "head.pt"
    torch.save({"format": CAM_HEAD_FORMAT, "layer": "3", "classes": ["a", "b", "c", "d"],
                "weight": torch.zeros(4, 6), "bias": torch.tensor([0.0, 0.0, 0.0, 5.0]),
                "accuracy": 1.0}, head)
    options = ["--model", "scanmodel:make", "--layers", "auto", "--batch-size", "4"]
    assert cli_main.main(["scan", str(on_path / "images"), *options, "--cam-head", str(head),
                          "--atlas", str(tmp_path / "with_head")]) == 0
    assert cli_main.main(["scan", str(on_path / "images"), *options,
                          "--atlas", str(tmp_path / "bare")]) == 0
    with_head = Atlas.open(tmp_path / "with_head")
    bare = Atlas.open(tmp_path / "bare")
    ok = with_head.valid()
    assert ok.sum() == 7 and (with_head.predictions()[ok] == 3).all()
    assert (bare.predictions()[bare.valid()] < 3).all()
