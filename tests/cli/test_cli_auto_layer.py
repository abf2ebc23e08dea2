"""Every command option that takes a layer takes "auto" (issue 23: ``invert --layers auto`` was
refused as "layer 'auto' is not in the model").

``auto`` is the model's own choice (``convscope layers`` prints it: ``block4`` on digits_cnn) for
every option that names a layer of the model; ``filters`` reads the first convolution (its
default: the filters readable as pictures); the atlas views read the atlas's last layer (the one
a scan left to "auto" stored). A coverage test walks the parser, so a new layer option must join
the sweep.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.cli.main import build_parser
from tests.cli.runner import run

MODEL = ("--model", "digits_cnn")
AUTO = "block4"
"""digits_cnn's "auto" layer."""
STYLE = ("--steps", "2", "--size", "28", "--json")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of three small gray images (a labelled folder for cam-retrofit)."""
    root = tmp_path_factory.mktemp("auto_layer")
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / "images" / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / label / f"{label}{i}.png")
    for r in range(3):  # random sets for tcav: three subfolders of two images
        (root / "randoms" / f"r{r}").mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "randoms" / f"r{r}" / f"{i}.png")
    return root


def _sweep(root: Path) -> dict[tuple[str, str], list[str]]:
    """(command, option) -> its argv with "auto" (atlas views run after ``scan``, in order)."""
    image, other = str(root / "images" / "a" / "a0.png"), str(root / "images" / "b" / "b0.png")
    atlas, out = str(root / "atlas"), str(root / "out")
    return {
        ("explain", "--layer"): ["explain", image, "--method", "gradcam", "--layer", "auto",
                                 "--out", f"{out}_e.png", "--json", *MODEL],
        ("report", "--layer"): ["report", image, "--methods", "gradcam", "--layer", "auto",
                                "--faithfulness-steps", "0", "--out", f"{out}_report", *MODEL],
        ("leaderboard", "--layer"): ["leaderboard", str(root / "images"), "--methods", "gradcam",
                                     "--metrics", "deletion_auc", "--target", "top1", "--layer", "auto",
                                     "--steps", "2", "--out", f"{out}_board", "--json", *MODEL],
        ("evaluate", "--layer"): ["evaluate", image, "--method", "gradcam", "--layer", "auto",
                                  "--steps", "2", "--json", *MODEL],
        ("filters", "--layer"): ["filters", "--layer", "auto", "--out", f"{out}_f.png", "--json", *MODEL],
        ("featuremaps", "--layer"): ["featuremaps", image, "--layer", "auto", "--out", f"{out}_fm.png",
                                     "--json", *MODEL],
        ("mask", "--layer"): ["mask", image, "--layer", "auto", "--channel", "1", "--out", f"{out}_m.png",
                              "--json", *MODEL],
        ("visualize", "--layer"): ["visualize", "--layer", "auto", "--gallery", "2", "--steps", "2",
                                   "--size", "28", "--out", f"{out}_g.png", "--json", *MODEL],
        ("visualize", "--objective"): ["visualize", "--objective", "channel:auto:1", "--steps", "2",
                                       "--size", "28", "--out", f"{out}_v.png", "--json", *MODEL],
        ("cam-retrofit", "--layer"): ["cam-retrofit", str(root / "images"), "--layer", "auto", "--steps",
                                      "2", "--out", f"{out}_head.pt", "--json", *MODEL],
        ("invert", "--layers"): ["invert", image, "--layers", "auto", "--steps", "2", "--out",
                                 f"{out}_i.png", "--json", *MODEL],
        ("texture", "--layers"): ["texture", image, "--layers", "auto", "--steps", "2", "--size", "28",
                                  "--source-size", "28", "--out", f"{out}_t.png", "--json", *MODEL],
        ("style", "--content-layer"): ["style", image, other, "--content-layer", "auto", "--style-layers",
                                       "block3", *STYLE, "--out", f"{out}_s.png", *MODEL],
        ("style", "--style-layers"): ["style", image, other, "--content-layer", "block3", "--style-layers",
                                      "auto", *STYLE, "--out", f"{out}_s2.png", *MODEL],
        ("scan", "--layers"): ["scan", str(root / "images"), "--atlas", atlas, "--layers", "block3,auto",
                               "--json", *MODEL],
        ("top", "--layer"): ["top", "--atlas", atlas, "--layer", "auto", "--channel", "1", "--out",
                             f"{out}_top.png", "--json"],
        ("neighbors", "--layer"): ["neighbors", "--index", "0", "--atlas", atlas, "--layer", "auto",
                                   "--k", "2", "--out", f"{out}_n.png", "--json"],
        ("project", "--layer"): ["project", "--atlas", atlas, "--layer", "auto", "--method", "pca",
                                 "--out", f"{out}_p.png"],
        ("tcav", "--layer"): ["tcav", "--concept", f"a={root / 'images' / 'a'}", "--randoms",
                              str(root / "randoms"), "--inputs", str(root / "images" / "b"), "--target", "3",
                              "--layer", "auto", "--out", f"{out}_tcav", "--json", *MODEL],
        ("dissect", "--layer"): ["dissect", "digits_planted", "--limit", "20", "--layer", "auto",
                                 "--out", f"{out}_dissect", "--json", *MODEL],
        ("crp", "--layer"): ["crp", image, "--layer", "auto", "--top", "2", "--out", f"{out}_crp", "--json",
                             *MODEL],
        ("concepts", "--layer"): ["concepts", str(root / "images"), "--layer", "auto", "--k", "2",
                                  "--out", f"{out}_concepts", "--json", *MODEL],
    }


def _layer_options() -> set[tuple[str, str]]:
    """Every (command, option) of the parser whose value names layers (or an objective on one)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = set()
    for command, sub_parser in sub.choices.items():
        for action in sub_parser._actions:
            option = max(action.option_strings, key=len, default="")
            if "layer" in option or option == "--objective":
                found.add((command, option))
    return found


def test_the_sweep_covers_every_layer_option(tmp_path: Path) -> None:
    assert set(_sweep(tmp_path)) == _layer_options()


def test_every_layer_option_takes_auto(capsys: pytest.CaptureFixture[str], folder: Path) -> None:
    answers = {}
    for key, argv in _sweep(folder).items():
        code, out, err = run(capsys, *argv)
        assert code == 0, (key, err)
        answers[key] = out
    assert json.loads(answers[("explain", "--layer")])["layer"] == AUTO
    assert json.loads(answers[("featuremaps", "--layer")])["layer"] == AUTO
    assert json.loads(answers[("filters", "--layer")])["layer"] == "block1.0"  # the first conv
    assert json.loads(answers[("invert", "--layers")])["layers"] == [AUTO]
    assert json.loads(answers[("scan", "--layers")])["layers"] == ["block3", AUTO]
    assert json.loads(answers[("top", "--layer")])["layer"] == AUTO  # the atlas's last layer
    assert json.loads(answers[("tcav", "--layer")])["results"][0]["layer"] == AUTO
    assert json.loads(answers[("dissect", "--layer")])["layer"] == AUTO
