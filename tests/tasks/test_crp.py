"""``convscope.crp`` and ``convscope crp``: ranking, files written, numbers that match the method."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import convscope
from convscope.errors import BadArgument
from convscope.methods.concepts import CRP
from convscope.model import Model, load_model
from tests.cli.runner import run


@pytest.fixture(scope="module")
def digits() -> Model:
    return load_model("digits_cnn")


def digit_batch(model: Model, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(4)
    return model.normalize(torch.rand(batch, 1, 28, 28, generator=gen))


def test_crp_ranks_channels_and_matches_the_method(digits: Model, tmp_path: Path) -> None:
    x = digit_batch(digits)
    result = convscope.crp(digits, x, target=[2, 7], layer="block3", top=3)
    direct = CRP(digits, layer="block3").conditional(x, [2, 7], top=3)
    torch.testing.assert_close(result.relevance, direct.relevance)
    torch.testing.assert_close(result.heatmaps, direct.heatmaps)
    assert result.targets.tolist() == [2, 7] and result.layer == "block3"
    ranked = result.ranked(1)
    assert [c for c, _ in ranked[:3]] == [c for (c,) in result.conditions[1]]
    assert all(a[1] >= b[1] for a, b in itertools.pairwise(ranked))
    assert float(result.shares().abs().sum(1).sub(1).abs().max()) < 1e-5
    files = result.save(tmp_path)
    assert {p.name for p in files} == {"crp_0.png", "crp_1.png", "crp.json", "crp.html"}
    summary = json.loads((tmp_path / "crp.json").read_text())
    first = summary["images"][0]["conditions"][0]
    assert first["relevance"] == pytest.approx(float(result.relevance[0, ranked_first(result)]))
    assert first["heatmap_sum"] == pytest.approx(float(result.heatmaps[0, 0].sum()), rel=1e-6)
    assert "<img" in (tmp_path / "crp.html").read_text() and Image.open(files[0]).size[0] > 160


def ranked_first(result: convscope.ConceptRelevance) -> int:
    return result.ranked(0)[0][0]


def test_channel_groups_and_the_default_top(digits: Model) -> None:
    x = digit_batch(digits, 1)
    grouped = convscope.crp(digits, x, target=4, layer="block2", channels=[1, [2, 3]])
    assert grouped.conditions == [[(1,), (2, 3)]]
    assert grouped.condition_relevance(0, 1) == pytest.approx(float(grouped.relevance[0, 2:4].sum()))
    assert len(convscope.crp(digits, x, layer="block2").conditions[0]) == 6
    with pytest.raises(BadArgument, match="no condition 5"):
        grouped.overlay(0, 5)


def test_cli_writes_png_json_html(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    image = tmp_path / "digit.png"
    Image.fromarray((torch.rand(28, 28) * 255).byte().numpy(), mode="L").save(image)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "crp", str(image), "--model", "digits_cnn", "--layer", "block4",
                            "--units", "3,5+6", "--target", "1", "--out", str(out), "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert [c["channels"] for c in summary["images"][0]["conditions"]] == [[3], [5, 6]]
    assert {p.name for p in out.iterdir()} == {"crp_0.png", "crp.json", "crp.html"}
    code, _, err = run(capsys, "crp", str(image), "--model", "digits_cnn", "--layer", "block4",
                       "--units", "3,99", "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "channel 99 is out of range" in err
    code, _, err = run(capsys, "crp", str(image), "--model", "digits_cnn", "--units", "3,x")
    assert code == 2 and "--units '3,x'" in err
