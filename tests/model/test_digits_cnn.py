"""digits_cnn: the shipped weights load strictly, classify held-out digits, and CAM applies exactly."""

from __future__ import annotations

import pytest
import torch

import convscope
from convscope.data.datasets import load_mnist5k
from convscope.model import Model, auto_layer, load_model
from convscope.model.digits_cnn import WEIGHTS, DigitsCNN, heldout_split


@pytest.fixture(scope="module")
def digits() -> Model:
    torch.set_num_threads(2)
    return load_model("digits_cnn")


def test_weights_load_strictly_and_small() -> None:
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    net = DigitsCNN()
    assert net.load_state_dict(state, strict=True) is not None
    assert set(state) == set(net.state_dict())
    assert WEIGHTS.stat().st_size < 1_000_000


def test_zoo_entry(digits: Model) -> None:
    assert digits.labels == [str(d) for d in range(10)]
    assert digits.name == "digits_cnn" and digits.channels == 1 and digits.input_size == (28, 28)
    assert not digits.training
    assert auto_layer(digits) == "block4"  # the last block (ending in its ReLU) before pooling


def test_heldout_accuracy(digits: Model) -> None:
    images, labels = load_mnist5k()
    train, held = heldout_split(len(labels))
    assert len(held) == 1000 and len(set(train.tolist()) | set(held.tolist())) == 5000
    with torch.no_grad():
        # through the public preprocessing: gray (B,1,28,28) in [0,1] -> normalized model input
        predicted = digits(digits.preprocess(images[held])).argmax(1)
    accuracy = (predicted == labels[held]).float().mean().item()
    assert accuracy >= 0.97, accuracy


def test_cam_is_exact_on_gap_linear_head(digits: Model) -> None:
    images, labels = load_mnist5k()
    x = digits.preprocess(images[::500])  # one digit of each class
    exp = convscope.explain(digits, x, method="cam", target=labels[::500].tolist(), relu=False)
    assert exp.values.shape == (10, 1, 28, 28) and exp.raw.shape == (10, 1, 7, 7)
    with torch.no_grad():
        logits = digits(x)
    # CAM identity (Zhou et al. 2016): mean of the unrectified map + bias = the target's logit
    bias = digits.net.fc.bias[labels[::500]]
    expected = logits[torch.arange(10), labels[::500]]
    assert torch.allclose(exp.raw.mean((1, 2, 3)) + bias, expected, atol=1e-4)
    rectified = convscope.explain(digits, x, method="cam")
    assert rectified.values.min() >= 0 and rectified.values.amax((1, 2, 3)).gt(0).all()


def test_weights_file_as_checkpoint_gets_the_zoo_preprocessing(digits: Model) -> None:
    from_file = load_model(WEIGHTS)  # a state dict recognized as the digits_cnn architecture
    assert from_file.spec == digits.spec and from_file.labels == digits.labels
    x = digits.preprocess(torch.rand(3, 1, 28, 28))
    with torch.no_grad():
        assert torch.equal(from_file(x), digits(x))
