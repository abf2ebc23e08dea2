"""The classes a channel supports: exact weights through affine heads (set by construction),
finite differences through non-linear ones, and the data-flow test that tells them apart."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.errors import BadArgument, ConvscopeError
from convscope.methods.features.classes import channel_effect
from convscope.model import Model, Preprocess
from convscope.model.paths import affine_after
from convscope.tasks.inside import unit_classes

pytestmark = pytest.mark.usefixtures("one_thread")

W = torch.tensor([[1.0, 0.0, -2.0, 0.0],
                  [0.0, 3.0, 0.0, 0.5],
                  [-1.0, 0.0, 0.0, 5.0]])
"""Head weights (3 classes x 4 channels): channel 1 backs class 1, channel 3 class 2, channel 2
argues against class 0."""


class CamNet(nn.Module):
    """conv -> ReLU -> global average pool -> Linear(W): the path above ``act`` is affine."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.fc.weight.copy_(W)
            self.fc.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


class Head(nn.Module):
    """The channels are the input itself (``inp``), so a rise of channel k is ``x + t e_k``."""

    def __init__(self, body: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = body
        self.inp = nn.Identity()
        self.fc1, self.drop, self.fc2 = nn.Linear(3, 5), nn.Dropout(0.5), nn.Linear(5, 2)

    def forward(self, x: Tensor) -> Tensor:
        a = self.inp(x)
        if self.body == "relu":
            return self.fc2(F.relu(self.fc1(a.mean((2, 3)))))
        if self.body == "square":
            return self.fc2(self.fc1((a * a).mean((2, 3))))
        if self.body == "maxpool":
            return self.fc2(self.fc1(F.adaptive_max_pool2d(a, 1).flatten(1)))
        return self.fc2(self.drop(self.fc1(a.mean((2, 3)))))  # affine: two Linear layers


def _images(n: int = 2) -> Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("k", range(4))
def test_an_affine_head_gives_its_weights_for_any_image(k: int) -> None:
    net = CamNet().eval()
    for x in (_images(1), 5 * _images(2), torch.zeros(1, 3, 8, 8)):
        effect = channel_effect(net, x, "act", k)
        assert effect.linear
        torch.testing.assert_close(effect.scores, W[:, k], rtol=0, atol=1e-5)


def test_a_longer_affine_head_gives_the_product_of_its_weights() -> None:
    net = Head("affine").eval()
    effect = channel_effect(net, _images(), "inp", 1)
    assert effect.linear
    torch.testing.assert_close(effect.scores, net.fc2.weight @ net.fc1.weight[:, 1])


@pytest.mark.parametrize("body, culprit", [("relu", "relu"), ("square", "mul"),
                                           ("maxpool", "adaptive_max_pool2d")])
def test_a_nonlinear_head_gives_gradients_equal_to_finite_differences(body: str, culprit: str) -> None:
    net = Head(body).double().eval()
    x = _images(1).double()
    for k in range(3):
        effect = channel_effect(net, x, "inp", k)
        assert not effect.linear and repr(culprit) in effect.reason
        rise, h = torch.zeros_like(x), 1e-5
        rise[:, k] = 1.0
        fd = (net(x + h * rise) - net(x - h * rise)) / (2 * h)
        torch.testing.assert_close(effect.scores, fd[0], rtol=1e-5, atol=1e-7)


def test_gradients_are_averaged_over_the_batch() -> None:
    net = Head("relu").double().eval()
    x = _images(3).double()
    both = channel_effect(net, x, "inp", 0).scores
    alone = torch.stack([channel_effect(net, x[i:i + 1], "inp", 0).scores for i in range(3)])
    torch.testing.assert_close(both, alone.mean(0))


class ReluInForward(nn.Module):
    """DenseNet's shape: the forward applies F.relu to ``features`` before pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.relu(self.features(x)).mean((2, 3)))


def test_the_models_functional_relu_counts_unless_the_layer_is_read_after_it() -> None:
    net, x = ReluInForward().eval(), _images(1)
    assert not affine_after(net, x, "features").affine
    after = affine_after(net, x, "features+relu")
    assert after.affine, after.reason
    torch.testing.assert_close(channel_effect(net, x, "features+relu", 2).scores,
                               net.fc.weight[:, 2].detach())


def test_bad_channels_and_layers_are_refused() -> None:
    net = CamNet().eval()
    with pytest.raises(BadArgument, match=r"channels 0\.\.3"):
        channel_effect(net, _images(1), "act", 4)
    with pytest.raises(ConvscopeError, match="did you mean"):
        channel_effect(net, _images(1), "ac", 0)


def test_unit_classes_ranks_the_classes_by_the_weights() -> None:
    model = Model(CamNet().eval(), preprocess=Preprocess(input_size=(8, 8)),
                  labels=["cat", "dog", "owl"], name="cam")
    got = unit_classes(model, "act", 3, k=2)
    assert got.method == "weights"
    assert [r["label"] for r in got.classes] == ["owl", "dog"]
    assert [r["score"] for r in got.classes] == [5.0, 0.5]
    assert unit_classes(model, "act", 2, k=1).opposed == [{"index": 0, "label": "cat",
                                                           "score": -2.0}]
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2))
    assert unit_classes(model, "act", 1, k=1, image=image).classes[0]["label"] == "dog"
    with pytest.raises(BadArgument, match="k=0"):
        unit_classes(model, "act", 1, k=0)


def test_a_unit_never_opposes_a_class_it_raises_nor_the_reverse() -> None:
    """Channel 3's weights are (0, 0.5, 5): nothing to oppose, though "opposes most" listed the
    two smallest (cat 0, dog 0.5); channel 2's (-2, 0, 0) support no class."""
    model = Model(CamNet().eval(), preprocess=Preprocess(input_size=(8, 8)),
                  labels=["cat", "dog", "owl"], name="cam")
    three = unit_classes(model, "act", 3, k=2)
    assert [r["label"] for r in three.classes] == ["owl", "dog"] and three.opposed == []
    two = unit_classes(model, "act", 2, k=3)
    assert two.classes == [] and [r["label"] for r in two.opposed] == ["cat"]
