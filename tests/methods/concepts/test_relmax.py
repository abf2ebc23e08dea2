"""RelMax: a channel's top images by relevance, streamed by the scan, equal a brute-force ranking.

The reference is CRP run image by image (each channel's relevance for the image's predicted
class, and the position of its largest relevance); the scan must keep exactly the k best of
each channel, whatever the batches, and write them into the atlas beside activation exemplars.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from convscope.data.atlas import Atlas
from convscope.data.datasets import load_mnist5k
from convscope.errors import BadArgument
from convscope.methods.concepts import CRP
from convscope.methods.dataset.scan import Scanner
from convscope.model import Model, load_model
from convscope.tasks.scan import scan_dataset
from tests.model_safety import assert_unharmed, snapshot
from tests.tasks.digits_atlas import digits_folder

LAYER, K = "block3", 3


@pytest.fixture(scope="module")
def digits() -> Model:
    return load_model("digits_cnn")


def brute_force(model: Model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, C) each channel's relevance for the predicted class, (N, C) the flat argmax of its
    relevance map, and the predictions, one image at a time."""
    crp = CRP(model, layer=LAYER, composite="epsilon_plus")
    totals, places = [], []
    with torch.no_grad():
        preds = model(x).argmax(1)
    for i in range(len(x)):
        maps = crp.conditional(x[i:i + 1], int(preds[i]), channels=[0])
        totals.append(maps.relevance[0])
        places.append(maps.layer_maps[0].flatten(1).argmax(1))
    return torch.stack(totals), torch.stack(places), preds


def test_scanner_keeps_the_k_most_relevant_images_of_each_channel(digits: Model) -> None:
    images, _ = load_mnist5k()
    x = digits.normalize(images[:24])
    before = snapshot(digits)
    scanner = Scanner(digits, LAYER, k=K, relevance=True)
    for start in range(0, 24, 10):  # uneven batches
        scanner.step(x[start:start + 10], torch.arange(start, min(24, start + 10)))
    assert_unharmed(digits, before)
    totals, places, _ = brute_force(digits, x)
    top = scanner.topk[LAYER + "#relevance"]
    best = totals.t().topk(K, 1)
    torch.testing.assert_close(top.values, best.values, rtol=1e-4, atol=1e-6)
    assert torch.equal(top.indices, best.indices)
    width = 7  # block3's maps are 7 x 7
    flat = places.t().gather(1, best.indices)
    assert torch.equal(top.ys * width + top.xs, flat)
    activation = scanner.topk[LAYER]  # the activation exemplars are another ranking
    assert not torch.equal(activation.indices, top.indices)


def test_scan_writes_relevance_exemplars_into_the_atlas(digits: Model, tmp_path: Path) -> None:
    folder = digits_folder(tmp_path / "digits", per_class=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="scan skipped")
        scan_dataset(digits, folder, tmp_path / "atlas", layers=[LAYER], k=K, batch_size=8,
                     chunk_size=8, relevance=True)
        plain = scan_dataset(digits, folder, tmp_path / "plain", layers=[LAYER], k=K, batch_size=8)
    atlas = Atlas.open(tmp_path / "atlas")
    ok = [i for i, status in enumerate(atlas.statuses()) if status == "ok"]
    from convscope.data import load_image

    x = digits.preprocess([load_image(atlas.sources()[i]) for i in ok])
    totals, _, _ = brute_force(digits, x)
    for channel in (0, 17, 63):
        records = atlas.top(LAYER, channel, kind="relevance")
        expected = totals[:, channel].topk(K)
        assert [r.index for r in records] == [ok[i] for i in expected.indices.tolist()]
        assert [r.value for r in records] == pytest.approx(expected.values.tolist(), rel=1e-4, abs=1e-6)
    assert atlas.top(LAYER, 0) == plain.top(LAYER, 0)  # the activation exemplars are unchanged
    with pytest.raises(BadArgument, match="no relevance exemplars"):
        plain.top(LAYER, 0, kind="relevance")


def test_cli_scans_and_shows_relevance_exemplars(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tests.cli.runner import run

    folder = digits_folder(tmp_path / "digits", per_class=1)
    code, _, err = run(capsys, "scan", str(folder), "--atlas", str(tmp_path / "atlas"), "--model",
                       "digits_cnn", "--layers", LAYER, "--k", "2", "--relevance")
    assert code == 0, err
    out = tmp_path / "top.png"
    code, stdout, err = run(capsys, "top", "--atlas", str(tmp_path / "atlas"), "--layer", LAYER,
                            "--channel", "5", "--relevance", "--out", str(out), "--json")
    assert code == 0 and out.is_file(), err
    atlas = Atlas.open(tmp_path / "atlas")
    assert [r["index"] for r in json.loads(stdout)["top"]] == [
        r.index for r in atlas.top(LAYER, 5, kind="relevance")]
