"""tasks.adversarial: the saved-PNG verdict, the budget parser and the class check."""

from __future__ import annotations

import pytest
import torch

from convscope.data import load_image
from convscope.errors import BadArgument, BadTarget
from convscope.model import Model, load_model
from convscope.render import save_png
from convscope.tasks.adversarial import adversarial, class_of, parse_budget

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits() -> Model:
    return load_model("digits_cnn")


def test_saved_png_verdict_is_what_a_reloaded_file_predicts(digits: Model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    image = torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(0))
    made = adversarial(digits, image, eps=24 / 255, target=3, steps=20, margin=0.0)
    path = save_png(made.picture, tmp_path / "adv.png")
    back = load_image(path)
    with torch.no_grad():
        probs = digits(digits.normalize(back[None])).softmax(-1)[0]
    saved = made.summary["saved_png"]
    assert saved["same_pixels"] and saved["top"][0]["index"] == int(probs.argmax())
    assert saved["top"][0]["probability"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert saved["fools"] == (int(probs.argmax()) == 3)
    assert made.summary["after"][0]["index"] == int(probs.argmax())  # the 8-bit image is what was judged
    assert made.summary["before"][0]["index"] == int(made.result.original_class[0])


def test_unquantized_result_is_not_the_saved_pixels(digits: Model) -> None:
    image = torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(1))
    made = adversarial(digits, image, eps=0.01, steps=2, quantize=False, early_stop=False)
    assert not made.summary["saved_png"]["same_pixels"]


@pytest.mark.parametrize("text, value", [("4/255", 4 / 255), ("0.5", 0.5), ("1e-2", 0.01)])
def test_parse_budget(text: str, value: float) -> None:
    assert parse_budget(text) == value


@pytest.mark.parametrize("text", ["four", "-1/255", "0", "1/0"])
def test_parse_budget_refuses_with_the_name(text: str) -> None:
    with pytest.raises(BadArgument, match=r"^eps "):
        parse_budget(text, "eps")


def test_class_of(digits: Model) -> None:
    assert class_of(digits, "7") == 7
    with pytest.raises(BadTarget, match="the model has 10 classes"):
        class_of(digits, "10")
    with pytest.raises(BadTarget, match="not a class label"):
        class_of(digits, "cat")
