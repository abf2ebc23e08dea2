"""samples / predict / layers on the command line, and the one-line error contract."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cli.runner import run


def test_samples(capsys) -> None:
    code, out, _ = run(capsys, "samples", "--json")
    names = [s["name"] for s in json.loads(out)]
    assert code == 0
    assert {"sample:cat", "sample:coffee", "sample:brick", "sample:motorcycle"} <= set(names)


def test_predict_json(capsys) -> None:
    code, out, _ = run(capsys, "predict", "sample:cat", "sample:coffee", "--top", "2", "--json")
    data = json.loads(out)
    assert code == 0
    assert [d["predictions"][0]["index"] for d in data] == [285, 967]
    assert data[0]["predictions"][0]["label"] == "Egyptian cat"


def test_predict_text(capsys) -> None:
    code, out, _ = run(capsys, "predict", "sample:coffee", "--top", "1")
    assert code == 0 and "1. espresso (class 967)" in out


def test_layers_json(capsys) -> None:
    code, out, _ = run(capsys, "layers", "--json")
    layers = {d["name"]: d for d in json.loads(out)}
    assert code == 0 and layers["_conv_head"]["output_shape"] == [1280, 7, 7]


@pytest.mark.parametrize(("argv", "needle"), [
    (["predict", "missing.png"], "missing.png"),
    (["predict", "sample:caat"], "did you mean sample:cat"),
    (["predict", "sample:cat", "--top", "0"], "--top 0: "),
    (["predict", "sample:cat", "--model", "nope"], "model 'nope' is not known"),
    (["predict", "sample:cat", "--device", "cuda:7"], "--device"),
    (["layers", "--model", "no/such.pth"], "does not exist"),
    (["predict"], "the following arguments are required"),
    (["frobnicate"], "invalid choice"),
])
def test_errors_are_one_line_exit_2(capsys, argv: list[str], needle: str) -> None:
    code, _, err = run(capsys, *argv)  # argparse usage errors exit: caught there
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1


def test_bad_file_kinds_on_cli(tmp_path, capsys) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    for path in (empty, text, tmp_path):
        code, _, err = run(capsys, "predict", str(path))
        assert code == 2 and str(path.name) in err and len(err.strip().splitlines()) == 1


def test_untrusted_checkpoint_refused(tmp_path, capsys) -> None:
    import torch
    from torch import nn

    path = tmp_path / "pickled.pt"
    torch.save(nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), path)
    code, _, err = run(capsys, "layers", "--model", str(path))
    assert code == 2 and "--trust-checkpoint" in err
    code, out, _ = run(capsys, "layers", "--model", str(path), "--trust-checkpoint", "--json")
    assert code == 0 and json.loads(out)[0]["type"] == "Conv2d"


def test_real_process_has_no_traceback(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "convscope.cli.main", "predict",
                           str(tmp_path / "nothing.jpg")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "nothing.jpg" in proc.stderr


def _forged_png(side: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _bad_files(tmp_path):
    import numpy as np
    from PIL import Image

    whole = tmp_path / "whole.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(whole)
    files = {
        "empty.png": b"",
        "cut.jpg": whole.read_bytes()[: whole.stat().st_size // 2],
        "notes.jpg": b"this is not a picture\n",
        "bomb.png": _forged_png(100_000),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    Image.fromarray(np.full((3, 4), np.nan, np.float32)).save(tmp_path / "nan.tif")
    Image.fromarray(np.full((3, 4), 7.5, np.float32)).save(tmp_path / "hdr.tif")
    return [*files, "nan.tif", "hdr.tif", "missing.png"]


@pytest.mark.parametrize("command", [["predict"], ["explain", "--method", "saliency"]])
def test_every_bad_image_is_one_line_exit_2(tmp_path, capsys, command: list[str]) -> None:
    for name in _bad_files(tmp_path):
        argv = [command[0], str(tmp_path / name), *command[1:]]
        if command[0] == "explain":
            argv += ["--out", str(tmp_path / "out.png")]
        code, _, err = run(capsys, *argv)
        assert code == 2, name
        assert name in err and len(err.strip().splitlines()) == 1, err
