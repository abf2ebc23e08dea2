"""``convscope concepts``: gallery, JSON and HTML written; bad input is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.cli.runner import run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_concepts_of_a_dataset_class(capsys, tmp_path: Path) -> None:
    out = tmp_path / "c"
    code, text, _ = run(capsys, "concepts", "mnist5k", "--model", "digits_cnn", "--k", "3",
                        "--label", "7", "--target", "7", "--max-images", "12", "--patches", "3",
                        "--out", str(out), "--json")
    data = json.loads(text)
    assert code == 0 and data["k"] == 3 and data["images"] == 12 and data["targets"] == [7] * 12
    assert {Path(p).name for p in data["files"].values()} == {"gallery.png", "concepts.json", "index.html"}
    assert json.loads((out / "concepts.json").read_text())["layer"] == "block4"
    with Image.open(out / "gallery.png") as picture:
        assert picture.mode == "RGB"


@pytest.mark.parametrize("argv, words", [
    (["--k", "65"], "k=65 concepts from layer 'block4' with 64 channels"),
    (["--layer", "fc"], "no spatial map"),
    (["--max-images", "1"], "at least 2"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path: Path, argv: list[str], words: str) -> None:
    code, _, err = run(capsys, "concepts", "mnist5k", "--model", "digits_cnn", "--max-images", "4",
                       "--out", str(tmp_path), *argv)
    assert code == 2 and words in err and err.count("\n") == 1
