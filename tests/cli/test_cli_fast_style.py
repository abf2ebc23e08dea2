"""convscope fast-style train|apply: PNGs, JSON summaries, resume, and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from convscope.cli import fast_style as cli_fast_style
from convscope.cli import main as cli_main
from convscope.methods.synthesis.fast_style import FastStyleNet, load_fast_style, save_fast_style
from convscope.model import Model
from convscope.tasks.fast_style import sample_photos

TINY = ["--steps", "2", "--size", "32", "--batch", "1", "--width", "4", "--blocks", "1"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: see conftest


@pytest.fixture
def run(lite0: Model, monkeypatch):  # type: ignore[no-untyped-def]
    """``convscope ...`` through the real entry point, with the session's model (no reload)."""
    monkeypatch.setattr(cli_fast_style, "model_from_args", lambda _args: lite0)
    return cli_main.main


@pytest.fixture
def net_file(tmp_path):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return save_fast_style(FastStyleNet(width=4, blocks=1), tmp_path / "net.pt")


def test_train_writes_a_network_and_resumes_it(run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "style.pt"
    code = run(["fast-style", "train", "sample:brick", "--images", "sample:cat", "sample:coffee",
                "--out", str(out), *TINY, "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and out.is_file() and load_fast_style(out).config == {"width": 4, "blocks": 1}
    assert summary["steps_run"] == 2 and summary["content_images"] == 2 and summary["net"] == str(out)
    code = run(["fast-style", "train", "sample:brick", "--images", "sample:cat", "sample:coffee",
                "--out", str(out), "--steps", "3", "--size", "32", "--batch", "1", "--resume"])
    text = capsys.readouterr().out
    assert code == 0 and "1 steps" in text and "loss" in text


def test_images_samples_means_every_sample_photo(run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (40, 36), (200, 30, 30)).save(folder / "red.png")
    code = run(["fast-style", "train", "sample:gravel", "--images", "samples", str(folder),
                "--out", str(tmp_path / "n.pt"), *TINY, "--steps", "1", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["content_images"] == len(sample_photos()) + 1
    assert set(sample_photos()) == {"cat", "coffee", "astronaut", "rocket", "motorcycle"}


def test_apply_keeps_sizes_and_names_outputs(run, net_file, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    photo = tmp_path / "odd.png"
    Image.new("RGB", (45, 31), (10, 120, 200)).save(photo)
    code = run(["fast-style", "apply", str(net_file), "sample:cat", str(photo), "--size", "50",
                "--out-dir", str(tmp_path / "out"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["png"] for r in summary["images"]] == [
        str(tmp_path / "out" / "cat_styled.png"), str(tmp_path / "out" / "odd_styled.png")]
    assert Image.open(tmp_path / "out" / "cat_styled.png").size == (50, 33)  # cat is 451x300
    assert Image.open(tmp_path / "out" / "odd_styled.png").size == (50, 34)
    out = tmp_path / "one.png"
    assert run(["fast-style", "apply", str(net_file), str(photo), "--out", str(out)]) == 0
    assert Image.open(out).size == (45, 31) and "odd.png" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "needle"), [
    (["apply", "{bad}", "sample:cat"], "cannot be read"),
    (["apply", "{missing}", "sample:cat"], "does not exist"),
    (["apply", "{net}", "sample:cat", "sample:coffee", "--out", "x.png"], "--out takes one IMAGE"),
    (["apply", "{net}", "sample:kitten"], "unknown sample"),
    (["train", "sample:brick", "--images", "{missing}", "--out", "{tmp}/n.pt"], "does not exist"),
    (["train", "sample:brick", "--images", "sample:cat", "--out", "{tmp}/new.pt", "--resume"],
     "--resume"),
    (["train", "sample:brick", "--images", "sample:cat", "--out", "{tmp}/n.pt", "--steps", "-2"],
     "steps=-2"),
])
def test_errors_are_one_line_exit_2(run, net_file, tmp_path, capsys, argv, needle) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    names = {"bad": bad, "missing": tmp_path / "nope", "net": net_file, "tmp": tmp_path}
    code = run(["fast-style", *[a.format(**names) for a in argv]])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
