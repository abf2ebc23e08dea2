"""Guided backprop and the deconvnet: the rule reaches every rectifier, whatever its spelling.

A two-layer net checks both rules against their closed forms; one CNN written with ``nn.ReLU``
modules, ``F.relu`` and in-place ReLUs must give identical maps; the embedded ReLU6 network must
get guided maps that differ from its plain gradient (Captum's there: see test_captum_gradients).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.data import load_image
from convscope.errors import BadArgument, BadTarget
from convscope.methods.attribution import Deconvnet, GuidedBackprop, LayerGuidedBackprop
from convscope.methods.attribution.base import input_gradient
from convscope.model import Model, Preprocess, guarded


def image(batch: int = 2, size: int = 16, seed: int = 1) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(3 * 4 * 4, 32)
        self.out = nn.Linear(32, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.relu(self.hidden(x.flatten(1))))


def test_guided_and_deconv_match_their_closed_forms() -> None:
    torch.manual_seed(0)
    model = Model(TwoLayer().double(), preprocess=Preprocess(input_size=(4, 4)))
    x = image(3, size=4).double()
    w1, w2 = model.net.hidden.weight, model.net.out.weight[1]
    active = (model.net.hidden(x.flatten(1)) > 0).double()  # (B, 32)
    guided = (active * w2.clamp(min=0)) @ w1
    deconv = (w2.clamp(min=0) @ w1).expand(3, -1)
    torch.testing.assert_close(GuidedBackprop(model)(x, 1).flatten(1), guided)
    torch.testing.assert_close(Deconvnet(model)(x, 1).flatten(1), deconv)


Act = Callable[[Tensor], Tensor]

SPELLINGS: dict[str, Callable[[], Act]] = {
    "nn.ReLU": nn.ReLU,
    "nn.ReLU(inplace)": lambda: nn.ReLU(inplace=True),
    "F.relu": lambda: F.relu,
    "Tensor.relu_": lambda: Tensor.relu_,
}


class SmallNet(nn.Module):
    """conv-act-maxpool-conv(+skip)-act-GAP-linear; the activation is spelled as asked."""

    def __init__(self, spelling: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)
        self.act1, self.act2 = SPELLINGS[spelling](), SPELLINGS[spelling]()

    def forward(self, x: Tensor) -> Tensor:
        h = F.max_pool2d(self.act1(self.conv1(x)), 2)
        h = self.act2(self.conv2(h) + h)
        return self.fc(h.mean((2, 3)))


def small(spelling: str) -> Model:
    return Model(SmallNet(spelling), preprocess=Preprocess(input_size=(16, 16)))


@pytest.mark.parametrize("method", [GuidedBackprop, Deconvnet])
@pytest.mark.parametrize("spelling", ["nn.ReLU(inplace)", "F.relu", "Tensor.relu_"])
def test_functional_and_inplace_relus_equal_relu_modules(method: type, spelling: str) -> None:
    x = image()
    reference = method(small("nn.ReLU"))(x, [0, 3])
    assert not torch.allclose(reference, plain_gradient(small("nn.ReLU"), x, [0, 3]))
    assert torch.equal(method(small(spelling))(x, [0, 3]), reference)


def plain_gradient(model: Model, x: Tensor, target: int | list[int]) -> Tensor:
    with guarded(model):
        return input_gradient(model, x, target)[0]


def test_guided_backprop_works_on_the_relu6_embedded_model(lite0: Model) -> None:
    x = lite0.preprocess(load_image("sample:cat"))
    before = {k: v.clone() for k, v in lite0.state_dict().items()}
    guided = GuidedBackprop(lite0)(x, 285)
    plain = plain_gradient(lite0, x, 285)
    assert guided.shape == x.shape and torch.isfinite(guided).all()
    correlation = torch.corrcoef(torch.stack([guided.flatten(), plain.flatten()]))[0, 1]
    assert correlation < 0.9, "the guided rule did not reach the ReLU6 units"
    assert all(p.grad is None for p in lite0.parameters())
    assert all(torch.equal(v, before[k]) for k, v in lite0.state_dict().items())


def test_layer_guided_backprop_at_the_logits_equals_guided_backprop(tiny: Model) -> None:
    x = image()
    torch.testing.assert_close(LayerGuidedBackprop(tiny, layer="fc")(x, [1, 2]),
                               GuidedBackprop(tiny)(x, [1, 2]))


def test_layer_guided_backprop_explains_a_channel(tiny: Model) -> None:
    x = image()
    method = LayerGuidedBackprop(tiny, layer="relu1")
    with torch.no_grad():
        most_active = F.relu(tiny.net.conv1(x)).mean((2, 3)).argmax(1)
    torch.testing.assert_close(method(x, "top1"), method(x, most_active))
    one_channel = method(x, 4)
    assert one_channel.shape == x.shape and one_channel.abs().sum() > 0
    # conv1 is 3x3, so a channel's mean reaches every pixel while its max reaches one 3x3 patch
    peak = LayerGuidedBackprop(tiny, layer="relu1", score="max")(x, 4)
    assert ((peak.abs().sum(1) > 0).sum((1, 2)) <= 9).all()


def test_layer_guided_backprop_errors(tiny: Model) -> None:
    with pytest.raises(BadTarget, match="channels: layer 'relu1' has 6"):
        LayerGuidedBackprop(tiny, layer="relu1")(image(), 6)
    with pytest.raises(BadArgument, match="score='median'"):
        LayerGuidedBackprop(tiny, layer="relu1", score="median")  # type: ignore[arg-type]


class NoRectifier(nn.Module):
    """conv -> SiLU or GELU -> conv -> GAP -> linear: nothing for guided/deconv rules to act on."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2, self.fc = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Linear(4, 3)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv2(self.act(self.conv1(x))).mean((2, 3)))


@pytest.mark.parametrize("method", [GuidedBackprop, Deconvnet])
@pytest.mark.parametrize("act", [nn.SiLU, nn.GELU])
def test_a_model_without_rectifiers_gets_one_warning_naming_it(method: type, act: type) -> None:
    model = Model(NoRectifier(act()).eval(), preprocess=Preprocess(input_size=(16, 16)), name="smooth-net")
    x = image()
    with pytest.warns(UserWarning, match=r"on 'smooth-net': no rectifier .* plain gradient") as record:
        maps = method(model)(x, 1)
    assert len(record) == 1
    grad, _ = input_gradient(model, x, 1)
    torch.testing.assert_close(maps, grad)  # what the warning says


def test_layer_guided_backprop_warns_too() -> None:
    model = Model(NoRectifier(nn.SiLU()).eval(), preprocess=Preprocess(input_size=(16, 16)), name="smooth")
    with pytest.warns(UserWarning, match="no rectifier"):
        LayerGuidedBackprop(model, layer="conv2")(image(), 0)


def test_rectifier_models_do_not_warn(tiny: Model) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GuidedBackprop(tiny)(image(), 1)
        Deconvnet(tiny)(image(), 1)
