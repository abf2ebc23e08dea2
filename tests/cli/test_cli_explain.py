"""convscope explain / report on the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from convscope.cli.main import main


def test_explain_writes_png_raw_and_json(tmp_path, capsys) -> None:
    out, raw = tmp_path / "cat.png", tmp_path / "cat.npy"
    code = main(["explain", "sample:cat", "--method", "gradcam", "--target", "Egyptian cat",
                 "--out", str(out), "--raw", str(raw), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["targets"] == [285] and summary["layer"] == "_relu_head"
    assert Image.open(out).size == (451, 300)  # drawn on the photo at its own size
    values = np.load(raw)
    assert values.shape == (224, 224) and values.dtype == np.float32


def test_explain_per_channel_raw_and_options(tmp_path, capsys) -> None:
    raw = tmp_path / "ig.npy"
    code = main(["explain", "sample:coffee", "--method", "integrated_gradients", "-o", "steps=4",
                 "-o", "baseline=blurred", "--out", str(tmp_path / "ig.png"), "--raw", str(raw)])
    assert code == 0 and np.load(raw).shape == (3, 224, 224)
    assert "integrated_gradients for 'espresso'" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "needle"), [
    (["--method", "gradcamm"], "did you mean gradcam"),
    (["--method", "gradcam", "--layer", "_conv_haed"], "did you mean _conv_head"),
    (["--method", "saliency", "-o", "steps"], "KEY=VALUE"),
    (["--method", "saliency", "--target", "egyptian kat"], "did you mean 'Egyptian cat'"),
    (["--method", "saliency", "--target", "5000"], "out of range"),
])
def test_explain_errors(tmp_path, capsys, argv: list[str], needle: str) -> None:
    code = main(["explain", "sample:cat", "--out", str(tmp_path / "x.png"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_report_has_every_method_and_timings(tmp_path, capsys) -> None:
    code = main(["report", "sample:cat", "--methods", "saliency,gradcam,cam", "--out",
                 str(tmp_path)])
    page = (tmp_path / "report.html").read_text()
    assert code == 0
    for needle in ("saliency", "gradcam", "Egyptian cat", "layer _relu_head", " s</div>",
                   "data:image/png;base64,"):
        assert needle in page
    assert "http://" not in page and "https://" not in page  # self-contained


def test_report_shows_a_method_error_in_its_card(tmp_path, capsys) -> None:
    import sys
    import types

    import torch
    from torch import nn

    module = types.ModuleType("cs_flat_head")

    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 224 * 224, 3))

    module.make = make
    sys.modules["cs_flat_head"] = module
    try:
        code = main(["report", "sample:cat", "--methods", "cam,gradcam", "--model",
                     "cs_flat_head:make", "--out", str(tmp_path)])
    finally:
        del sys.modules["cs_flat_head"]
    page = (tmp_path / "report.html").read_text()
    assert code == 0 and "class=\"error\"" in page and "gradcam" in page


def test_explain_box_is_drawn_and_reported(tmp_path, capsys) -> None:
    code = main(["explain", "sample:cat", "--method", "cam", "--box", "--json",
                 "--out", str(tmp_path / "box.png")])
    summary = json.loads(capsys.readouterr().out)
    top, left, bottom, right = summary["box"]  # on the 451x300 photo, inside the 300x300
    assert code == 0 and 0 <= top < bottom <= 300 and 76 <= left < right <= 376  # centre crop
    assert (bottom - top) * (right - left) > 0.1 * 300 * 300  # the cat fills the photo
