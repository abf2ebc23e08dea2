"""convscope.leaderboard: methods x metrics over a dataset, intervals, ranks, ties, resuming."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convscope
from convscope.data.datasets import load_mnist5k
from convscope.errors import BadArgument, BadImage
from convscope.methods.evaluation.metrics import get_metric, metric_names
from convscope.model import Model, load_model
from convscope.tasks.leaderboard import choose
from convscope.tasks.leaderboard_inputs import subset
from convscope.tasks.leaderboard_table import make_leaderboard
from tests.as_detections import CLASS_METHODS

pytestmark = pytest.mark.usefixtures("one_thread")
METHODS = "saliency,gradcam,gradient_x_input"
CURVES = "deletion_auc,insertion_auc"
"""Named, not the default group: metrics that join the faithfulness group must not slow these tests."""


@pytest.fixture(scope="module")
def digits() -> Model:
    return load_model("digits_cnn")


def test_means_are_evaluates_on_the_same_images_and_ranks_follow_each_metrics_direction(
        digits: Model) -> None:
    board = convscope.leaderboard(digits, "mnist5k", METHODS, CURVES, images=8, steps=6, batch_size=3)
    assert board.images == 8 and board.methods == METHODS.split(",")
    assert board.metrics == ["deletion_auc", "insertion_auc"]
    images, labels = load_mnist5k()
    chosen = subset(5000, 8)
    reference = convscope.evaluate(digits, images[chosen], METHODS, target=labels[chosen], steps=6)
    for scores in reference.methods:  # the same per-image scoring, one batch instead of three
        for metric, mean in scores.means().items():
            assert board.cell(scores.method, metric).score.mean == pytest.approx(mean, abs=1e-4)
    for metric in board.metrics:
        sign = 1 if get_metric(metric).higher_is_better else -1
        cells = sorted((board.cell(m, metric) for m in board.methods), key=lambda c: c.rank or 0)
        assert [c.rank for c in cells] == [1, 2, 3]
        assert all(sign * a.score.mean >= sign * b.score.mean for a, b in itertools.pairwise(cells))
        for c in cells:
            assert c.score.low <= c.score.mean <= c.score.high and c.score.n == 8
            for other in c.ties:  # symmetric: the paired test of a - b and b - a
                assert c.method in board.cell(other, metric).ties
    rows = board.rows()
    assert len(rows) == 6 and {"method", "metric", "mean", "ci_low", "ci_high", "rank",
                               "indistinguishable_from", "seconds_per_image"} <= set(rows[0])
    said = board.statements()
    assert said[0].startswith("deletion_auc (lower is better): ") and "is best" in said[0]
    assert "paired bootstrap" in board.rule
    assert "<table>" in board._repr_html_() and "data:image/png" in board._repr_html_()


def test_default_metrics_are_the_registrys_groups(digits: Model) -> None:
    assert choose(digits, "saliency", None, regions=False)[1] == metric_names("faithfulness")
    assert choose(digits, "all", None, regions=True) == (
        CLASS_METHODS, metric_names("faithfulness") + metric_names("localization"))


def test_killed_after_two_chunks_it_resumes_and_gives_identical_numbers(digits: Model,
                                                                         tmp_path: Path) -> None:
    settings = dict(images=12, steps=5, batch_size=2, chunk_size=4)
    whole = convscope.leaderboard(digits, "mnist5k", METHODS, CURVES, **settings)  # type: ignore[arg-type]
    calls = []

    def kill(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 5:  # during the third chunk: two chunks (8 images) are committed
            raise KeyboardInterrupt

    checkpoint = tmp_path / "ck.json"
    with pytest.raises(KeyboardInterrupt):
        convscope.leaderboard(digits, "mnist5k", METHODS, CURVES, checkpoint=checkpoint, progress=kill,
                              **settings)  # type: ignore[arg-type]
    assert len(json.loads(checkpoint.read_text())["state"]["indices"]) == 8
    seen: list[int] = []
    again = convscope.leaderboard(digits, "mnist5k", METHODS, CURVES, checkpoint=checkpoint,
                                  progress=lambda d, t: seen.append(d), **settings)  # type: ignore[arg-type]
    assert again.resumed == 8 and seen == [10, 12]  # only the last chunk ran again
    assert whole.cell("saliency", "deletion_auc").score.n == 12
    assert _numbers(again) == _numbers(whole) and again.statements() == whole.statements()
    finished = convscope.leaderboard(digits, "mnist5k", METHODS, CURVES, checkpoint=checkpoint,
                                     **settings)  # type: ignore[arg-type]
    assert _numbers(finished) == _numbers(whole) and finished.resumed == 12
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BadArgument, match="is not a leaderboard checkpoint"):
        convscope.leaderboard(digits, "mnist5k", METHODS, CURVES, checkpoint=tmp_path / "bad.json",
                              **settings)  # type: ignore[arg-type]
    with pytest.raises(BadArgument, match=r"other settings .*steps"):
        convscope.leaderboard(digits, "mnist5k", METHODS, CURVES, checkpoint=checkpoint,
                              **{**settings, "steps": 6})  # type: ignore[arg-type]


def _numbers(board: convscope.Leaderboard) -> list[dict[str, object]]:
    """The rows without the time, which no two runs share."""
    return [{k: v for k, v in r.items() if k != "seconds_per_image"} for r in board.rows()]


def _digit_folder(root: Path, count: int = 2) -> Path:
    """Two class folders named after digits_cnn's labels, one image in each, as PNG files."""
    images, labels = load_mnist5k()
    for digit in (3, 7):
        first = int((labels == digit).nonzero()[0])
        folder = root / "photos" / str(digit)
        folder.mkdir(parents=True)
        for k in range(count // 2):
            pixels = (images[first + k, 0] * 255).byte().numpy()
            Image.fromarray(pixels).save(folder / f"d{k}.png")
    return root / "photos"


def test_localization_on_boxes_and_masks_matches_the_energy_computed_by_hand(digits: Model,
                                                                             tmp_path: Path) -> None:
    photos = _digit_folder(tmp_path)
    mask = np.zeros((28, 28), np.uint8)
    mask[4:20, 6:22] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    regions = tmp_path / "regions.csv"
    regions.write_text("image,top,left,bottom,right,mask\n3/d0.png,0,0,14,28,\n7/d0.png,,,,,m.png\n")
    board = convscope.leaderboard(digits, photos, "gradcam", "energy,pointing_game", regions=regions)
    assert board.images == 2 and board.target == "label"
    x = torch.cat([digits.preprocess(convscope.load_image(photos / d / "d0.png")) for d in "37"])
    maps = convscope.explain(digits, x, method="gradcam", target=torch.tensor([3, 7])).values.sum(1)
    inside = torch.zeros(2, 28, 28, dtype=torch.bool)
    inside[0, :14], inside[1, 4:20, 6:22] = True, True
    positive = maps.relu()
    energy = ((positive * inside).flatten(1).sum(1) / positive.flatten(1).sum(1)).mean()
    assert board.cell("gradcam", "energy").score.mean == pytest.approx(float(energy), abs=1e-5)


def test_the_embedded_model_on_the_sample_photos_writes_every_file(lite0: Model, tmp_path: Path) -> None:
    with pytest.raises(BadArgument, match=r"samples has no labels \(e.g. sample:astronaut\)"):
        convscope.leaderboard(lite0, "samples", "saliency", CURVES)  # before any work
    board = convscope.leaderboard(lite0, "samples", "gradcam,saliency", CURVES, images=3, target="top1",
                                  steps=4)
    paths = board.save(tmp_path)
    summary = json.loads(paths["json"].read_text())
    assert summary["images"] == 3 and len(summary["rows"]) == 4
    assert paths["csv"].read_text().splitlines()[0].startswith("method,metric,group")
    page = paths["html"].read_text()
    assert "Leaderboard: efficientnet_lite0 on samples" in page and "data:image/png" in page
    assert Image.open(paths["png"]).size[0] > 300


def test_bad_input_is_one_line(digits: Model, tmp_path: Path) -> None:
    with pytest.raises(BadArgument, match=r"metric 'energy' needs a box or mask .*--regions"):
        convscope.leaderboard(digits, "mnist5k", "saliency", "energy", images=2)
    with pytest.raises(BadArgument, match="method 'gradient' is not known"):
        convscope.leaderboard(digits, "mnist5k", "gradient", images=2)
    with pytest.raises(BadArgument, match="metric 'delete_auc' is not known"):
        convscope.leaderboard(digits, "mnist5k", "saliency", "delete_auc", images=2)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(flat / "a.png")
    with pytest.raises(BadArgument, match=r"has no labels .*--target top1"):
        convscope.leaderboard(digits, flat, "saliency")
    assert convscope.leaderboard(digits, flat, "saliency", CURVES, target="top1", steps=3).images == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadImage, match="holds no files"):
        convscope.leaderboard(digits, tmp_path / "empty", "saliency")
    with pytest.raises(BadArgument, match="is empty"):
        convscope.leaderboard(digits, [], "saliency")
    with pytest.raises(BadArgument, match=r"class 'tabby' of dataset .* is not a class of model digits_cnn"):
        (tmp_path / "named" / "tabby").mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "named" / "tabby" / "a.png")
        convscope.leaderboard(digits, tmp_path / "named", "saliency")
    photos = _digit_folder(tmp_path / "r")
    regions = tmp_path / "r.csv"
    regions.write_text("image,top,left,bottom,right\n3/d0.png,0,0,14,28\n")
    with pytest.raises(BadArgument, match="1 of the 2 images have no box or mask"):
        convscope.leaderboard(digits, photos, "saliency", "energy", regions=regions)
    regions.write_text("image,top,left,bottom,right\nnope.png,0,0,14,28\n")
    with pytest.raises(BadArgument, match=r"line 2: image 'nope.png' is not in the dataset"):
        convscope.leaderboard(digits, photos, "saliency", "energy", regions=regions)


def test_statements_say_who_wins_and_who_cannot_be_told_apart() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(40)
    scores = {"a": base + 1, "b": base, "c": base + rng.normal(0, 0.05, 40)}  # a wins; b ~ c
    state = {"indices": list(range(40)), "seconds": {}, "errors": {}, "skipped": [],
             "scores": {m: {"insertion_auc": v.tolist(), "deletion_auc": v.tolist()}
                        for m, v in scores.items()}}
    board = make_leaderboard("m", "d", "label", ["a", "b", "c"], ["insertion_auc", "deletion_auc"], state,
                             resamples=1000, seed=0)
    insertion, deletion = board.statements()
    assert insertion.startswith("insertion_auc (higher is better): a is best (")
    assert insertion.endswith("better than every other method beyond chance; also indistinguishable: b ~ c.")
    assert board.cell("a", "deletion_auc").rank == 3  # lower is better: the same scores rank the other way
    assert deletion.startswith("deletion_auc (lower is better): ") and "a is best" not in deletion
    noisy = {m: {"insertion_auc": (base + rng.normal(0, 1, 40)).tolist()} for m in "abc"}
    tied = make_leaderboard("m", "d", "label", ["a", "b", "c"], ["insertion_auc"],
                            {**state, "scores": noisy}, resamples=1000, seed=0)
    assert "no two methods can be told apart at 40 images" in tied.statements()[0]
