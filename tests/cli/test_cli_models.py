"""A user's own small CNN from the command line, in every file format: a factory in a file with a
state dict, TorchScript and torch.export (fixed at 64x64, batch 1), with its input size, mean/std
and a labels file. Each method runs or is refused in one line naming the methods that work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from convscope.data import load_image
from convscope.model import load_model

from .runner import run

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated"),
              pytest.mark.filterwarnings("ignore:DeepLIFT contributions miss:UserWarning")]  # max-pool

NET_PY = '''
import torch
from torch import nn

from blocks import conv_block  # a sibling file: importable without PYTHONPATH


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(conv_block(3, 8), nn.MaxPool2d(2), conv_block(8, 16))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def make():
    torch.manual_seed(0)
    return SmallCNN().eval()
'''

BLOCKS_PY = '''
from torch import nn


def conv_block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())
'''

LABELS = ["apple", "banana", "cherry"]
NORM = ["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]
LOCAL = ["saliency", "gradient_x_input", "integrated_gradients", "smoothgrad", "occlusion",
         "rise", "lime"]
HOOKS = ["cam", "gradcam", "gradcam_pp", "scorecam", "hirescam", "xgradcam", "layercam", "eigencam",
         "eigengradcam", "ablationcam", "fullgrad"]
RULES = ["guided_backprop", "deconvnet", "deeplift", "lrp", "guided_gradcam"]
FAST = {"integrated_gradients": ["-o", "steps=4"], "smoothgrad": ["-o", "samples=2"],
        "rise": ["-o", "masks=8"], "lime": ["-o", "samples=16"], "occlusion": ["-o", "window=16",
        "-o", "stride=16"], "scorecam": ["-o", "batch_size=8"], "ablationcam": ["-o", "batch_size=8"]}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("user_model")
    (root / "net.py").write_text(NET_PY)
    (root / "blocks.py").write_text(BLOCKS_PY)
    (root / "labels.txt").write_text("\n".join(LABELS) + "\n")
    net = load_model(f"{root / 'net.py'}:make").net
    torch.save(net.state_dict(), root / "weights.pth")
    torch.jit.script(net).save(str(root / "scripted.pt"))
    example = torch.randn(1, 3, 64, 64)
    torch.export.save(torch.export.export(net, (example,)), str(root / "exported.pt2"))
    photo = torch.rand(3, 40, 60)
    Image.fromarray((photo.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(root / "photo.png")
    return {"root": root, "photo": root / "photo.png", "labels": root / "labels.txt"}


def _model_args(files: dict[str, Path], kind: str) -> list[str]:
    root, labels = files["root"], ["--labels", str(files["labels"])]
    if kind == "factory":
        spec = ["--model", f"{root / 'net.py'}:make", "--weights", str(root / "weights.pth"),
                "--input-size", "64"]
    elif kind == "torchscript":
        spec = ["--model", str(root / "scripted.pt"), "--input-size", "64x64"]
    else:  # the exported program knows its own 64x64 input
        spec = ["--model", str(root / "exported.pt2")]
    return [*spec, *NORM, *labels, "--device", "cpu"]


@pytest.mark.parametrize("kind", ["factory", "torchscript", "exported"])
def test_predict_shows_the_labels_and_the_same_scores_in_every_format(capsys, files, kind) -> None:
    code, out, err = run(capsys, "predict", str(files["photo"]), "--top", "3", "--json",
                         *_model_args(files, kind))
    assert code == 0, err
    (result,) = json.loads(out)
    assert {p["label"] for p in result["predictions"]} == set(LABELS)
    reference = load_model(f"{files['root'] / 'net.py'}:make",
                           preprocess={"input_size": 64, "mean": (0.5,) * 3, "std": (0.25,) * 3})
    with torch.no_grad():
        probs = reference(reference.preprocess(load_image(files["photo"]))).softmax(1)[0]
    for p in result["predictions"]:
        assert p["probability"] == pytest.approx(float(probs[p["index"]]), abs=1e-4)


@pytest.mark.parametrize("kind", ["factory", "torchscript", "exported"])
def test_explain_runs_what_the_format_allows_and_refuses_the_rest(capsys, files, kind, tmp_path) -> None:
    works = LOCAL + ([] if kind == "torchscript" else HOOKS) + (RULES if kind == "factory" else [])
    for method in LOCAL + HOOKS + RULES:
        out_png = tmp_path / f"{method}.png"
        code, out, err = run(capsys, "explain", str(files["photo"]), "--method", method,
                             "--out", str(out_png), *FAST.get(method, []), *_model_args(files, kind))
        if method in works:
            assert code == 0, f"{method}: {err}"
            assert any(label in out for label in LABELS)
            assert Image.open(out_png).size == (60, 40)  # drawn on the photo, at its size
        else:
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and "Traceback" not in err, f"{method}: {err}"
            assert f"'{method}'" in lines[0] and "methods that work: saliency" in lines[0]


def test_cam_family_options_from_the_command_line(capsys, files, tmp_path) -> None:
    """aug_smooth, eigen_smooth and LayerCAM's fused layers as -o options; a bad one is one line."""
    args = [str(files["photo"]), "--method", "layercam", "--layer", "features.2", "--out",
            str(tmp_path / "fused.png"), *_model_args(files, "factory")]
    code, _out, err = run(capsys, "explain", *args, "-o", "fuse=features.0", "-o", "fusion='max'",
                         "-o", "aug_smooth=True", "-o", "eigen_smooth=True")
    assert code == 0, err
    assert Image.open(tmp_path / "fused.png").size == (60, 40)
    code, _out, err = run(capsys, "explain", *args, "-o", "fusion='min'")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "fusion" in err, err


def test_featuremaps_refused_for_torchscript(capsys, files, tmp_path) -> None:
    code, _out, err = run(capsys, "featuremaps", str(files["photo"]), "--layer", "features.0.0",
                          "--out", str(tmp_path / "maps.png"), *_model_args(files, "torchscript"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "TorchScript" in err


@pytest.mark.parametrize(("kind", "shapes"), [("factory", True), ("exported", True),
                                              ("torchscript", False)])
def test_layers_lists_the_original_names_and_types(capsys, files, kind, shapes) -> None:
    code, out, err = run(capsys, "layers", "--json", *_model_args(files, kind))
    assert code == 0, err
    layers = {info["name"]: info for info in json.loads(out)}
    assert layers["features.0.0"]["type"] == "Conv2d" and layers["fc"]["type"] == "Linear"
    assert layers["fc"]["params"] == 16 * 3 + 3
    shape = layers["features.2.0"]["output_shape"]
    assert shape == ([16, 32, 32] if shapes else None)


def test_exported_program_keeps_its_input_size(capsys, files) -> None:
    args = _model_args(files, "exported")
    code, _out, err = run(capsys, "predict", str(files["photo"]), *args, "--input-size", "32")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "exported for input_size (64, 64)" in err


@pytest.mark.parametrize(("extra", "needle"), [
    (["--input-size", "0"], "--input-size '0'"),
    (["--input-size", "64by64"], "--input-size '64by64'"),
    (["--mean", "a,b,c"], "--mean 'a,b,c'"),
    (["--std", "0.5,0.5"], "mean/std need 3 values"),
    (["--crop-fraction", "1.5"], "crop_fraction"),
    (["--labels", "no/such/labels.txt"], "--labels 'no/such/labels.txt'"),
])
def test_bad_model_options_are_one_line(capsys, files, extra, needle) -> None:
    args = ["--model", f"{files['root'] / 'net.py'}:make", "--device", "cpu"]
    code, _out, err = run(capsys, "predict", str(files["photo"]), *args, *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_labels_count_and_json_labels(capsys, files, tmp_path) -> None:
    two = tmp_path / "two.txt"
    two.write_text("a\nb\n")
    args = ["--model", f"{files['root'] / 'net.py'}:make", "--device", "cpu"]
    code, _out, err = run(capsys, "predict", str(files["photo"]), *args, "--labels", str(two))
    assert code == 2 and "2 names but the model outputs 3" in err
    as_json = tmp_path / "labels.json"
    as_json.write_text(json.dumps(["x", "y", "z"]))
    code, out, err = run(capsys, "predict", str(files["photo"]), *args, "--labels", str(as_json))
    assert code == 0 and {"x", "y", "z"} <= set(out.replace("(", " ").split())


def test_factory_file_errors_are_one_line(capsys, files, tmp_path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    for spec, needle in [(f"{tmp_path / 'missing.py'}:make", "does not exist"),
                         (f"{broken}:make", "RuntimeError: boom"),
                         (f"{files['root'] / 'net.py'}:nope", "cannot import 'nope'"),
                         ("no_such_package_xyz:make", "PYTHONPATH")]:
        code, _out, err = run(capsys, "predict", str(files["photo"]), "--model", spec)
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_pickled_module_of_a_class_that_does_not_import(capsys, files, tmp_path) -> None:
    import sys
    import types

    from torch import nn

    module = types.ModuleType("cs_gone_module")

    class Gone(nn.Module):
        def forward(self, x):
            return x

    Gone.__module__, Gone.__qualname__ = "cs_gone_module", "Gone"
    module.Gone = Gone
    sys.modules["cs_gone_module"] = module
    try:
        torch.save(Gone(), tmp_path / "gone.pt")
    finally:
        del sys.modules["cs_gone_module"]
    code, _out, err = run(capsys, "predict", str(files["photo"]), "--model",
                          str(tmp_path / "gone.pt"), "--trust-checkpoint")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "class does not import" in err and "cs_gone_module" in err
