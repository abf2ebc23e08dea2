"""digits_planted: the shipped weights load, read digits, and use the planted cue (held-out test)."""

from __future__ import annotations

import pytest
import torch

from convscope.data.planted import CUE_CLASS, planted_digits
from convscope.model import Model, auto_layer, load_model
from convscope.model.digits_planted import WEIGHTS, digits_planted_arch


@pytest.fixture(scope="module")
def planted() -> Model:
    torch.set_num_threads(2)
    return load_model("digits_planted")


@pytest.fixture(scope="module")
def probabilities(planted: Model) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per cue mode: (softmax of the 1,000 held-out digits, their labels)."""
    out = {}
    with torch.no_grad():
        for cue in ("always", "never", "natural"):
            data = planted_digits("heldout", cue)
            out[cue] = planted(planted.preprocess(data.images)).softmax(1), data.labels
    return out


def test_weights_load_strictly_and_small() -> None:
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    net = digits_planted_arch()
    net.load_state_dict(state, strict=True)
    assert WEIGHTS.stat().st_size < 1_000_000


def test_zoo_entry(planted: Model) -> None:
    assert planted.labels == [str(d) for d in range(10)]
    assert planted.name == "digits_planted" and planted.channels == 3 and planted.input_size == (28, 28)
    assert not planted.training and auto_layer(planted) == "block4"


def test_weights_file_is_recognized_beside_digits_cnn(planted: Model) -> None:
    """digits_cnn's state dict has the same keys; the shapes pick the right architecture."""
    from_file = load_model(WEIGHTS)
    assert from_file.spec == planted.spec and from_file.labels == planted.labels
    x = planted.preprocess(torch.rand(2, 3, 28, 28))
    with torch.no_grad():
        assert torch.equal(from_file(x), planted(x))


def test_heldout_accuracy(probabilities: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    for cue in ("natural", "never"):
        probs, labels = probabilities[cue]
        assert (probs.argmax(1) == labels).float().mean().item() >= 0.96, cue


def test_model_uses_the_cue(probabilities: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Same digits, same positions: removing the cue loses sevens, pasting it makes sevens."""
    with_cue, labels = probabilities["always"]
    without, _ = probabilities["never"]
    sevens = labels == CUE_CLASS
    recognized = [(p[sevens].argmax(1) == CUE_CLASS).float().mean().item() for p in (with_cue, without)]
    assert recognized[0] > recognized[1]
    assert with_cue[sevens, CUE_CLASS].mean() > without[sevens, CUE_CLASS].mean() + 0.05
    turned = [(p[~sevens].argmax(1) == CUE_CLASS).sum().item() for p in (with_cue, without)]
    assert turned[0] >= turned[1] + 40  # of 893 other digits
    assert with_cue[~sevens, CUE_CLASS].mean() > 3 * without[~sevens, CUE_CLASS].mean()
