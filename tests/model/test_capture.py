"""capture(): activations, their gradients, in-place clobbering, early stop and bad names."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from convscope.errors import BadArgument, BadLayer
from convscope.model import Model, Preprocess, capture, forward_until, frozen


class Stop(nn.Module):
    """Fails the test if the forward pass reaches it."""

    def forward(self, x: Tensor) -> Tensor:
        raise AssertionError("forward_until ran past the requested layer")


def clobbering_net() -> nn.Sequential:
    """conv -> ReLU(inplace=True): the ReLU overwrites the conv's output tensor."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(4, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).eval()


def no_hooks(net: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_records_activations_and_leaves_the_output_alone(image) -> None:
    net = clobbering_net()
    expected = net(image)
    with capture(net, ["0", "2"]) as acts:
        out = net(image)
    assert torch.equal(out, expected)
    torch.testing.assert_close(acts["0"], net[0](image))
    torch.testing.assert_close(acts["2"], net[2](net[0](image).relu()))
    assert [n for n, _ in acts.items()] == ["0", "2"]
    assert no_hooks(net)


def test_default_clone_keeps_pre_activations_intact(image) -> None:
    net = clobbering_net()
    with capture(net, "0") as acts:
        net(image)
    pre = acts["0"]
    assert (pre < 0).any()  # still the conv output, not the ReLU's
    assert torch.equal(pre, net[0](image))


def test_clone_false_detects_clobbering(image) -> None:
    net = clobbering_net()
    with capture(net, "0", clone=False) as acts:
        net(image)
    with pytest.raises(BadLayer, match="in place"):
        acts["0"]


def test_gradients_match_autograd(image) -> None:
    net = clobbering_net()
    with capture(net, ["0", "2"], grads=True) as acts:
        out = net(image)
    grads = acts.gradients(out[:, 1], retain_graph=True)
    a0, a2 = acts["0"], acts["2"]
    g0, g2 = torch.autograd.grad(out[:, 1].sum(), [a0, a2])
    assert torch.equal(grads["0"], g0) and torch.equal(grads["2"], g2)
    # d out / d conv-output is d out / d relu-output masked by the ReLU
    (g_relu,) = torch.autograd.grad(net[4](net[3](net[2](a0.relu()))).sum(0)[1], a0)
    torch.testing.assert_close(grads["0"], g_relu)
    assert all(p.grad is None for p in net.parameters())


def test_grads_with_frozen_params_and_an_input_without_grad(image) -> None:
    net = clobbering_net()
    with frozen(net), capture(net, "2", grads=True) as acts:
        out = net(image)
        assert acts["2"].requires_grad and out.requires_grad
        grads = acts.gradients(out.sum(1))
    assert grads["2"].shape == acts["2"].shape and grads["2"].abs().sum() > 0
    assert all(p.requires_grad for p in net.parameters())
    with frozen(net), capture(net, "2") as plain:
        net(image)
    assert not plain["2"].requires_grad  # without grads=True nothing is forced


class Tail(nn.Module):
    """Counts how often the forward pass reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.runs = 0

    def forward(self, x: Tensor) -> Tensor:
        self.runs += 1
        return x


def test_forward_until_stops_when_the_caller_of_the_layer_returns(image) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), Stop())
    acts = forward_until(net, image, ["0.1", "0.0"])  # "0" calls both: done once it returns
    assert set(acts) == {"0.0", "0.1"}
    torch.testing.assert_close(acts["0.1"], net[0][0](image).relu())
    assert no_hooks(net)
    assert forward_until(net, image, "0.0", grads=True)["0.0"].requires_grad


def test_forward_until_stops_right_after_a_top_level_layer_known_to_run_once(image) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Tail())
    first = forward_until(net, image, ["1", "0"])  # nothing known yet: the whole forward runs
    assert net[2].runs == 1
    again = forward_until(net, image, ["1", "0"])  # each ran once: stop after the last of them
    assert net[2].runs == 1 and no_hooks(net)
    torch.testing.assert_close(again["1"], net[0](image).relu())
    assert all(torch.equal(first[n], again[n]) for n in first)


def test_wrapped_model_uses_inner_names(image) -> None:
    model = Model(clobbering_net(), preprocess=Preprocess(input_size=(8, 8)))
    with capture(model, "auto") as acts:
        model(image)
    assert acts.names == ["2"]
    with pytest.raises(BadLayer, match="not captured"):
        acts["0"]


def test_unreached_layer_is_reported(image) -> None:
    class Skips(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)

        def forward(self, x: Tensor) -> Tensor:
            return self.used(x)

    net = Skips()
    with capture(net, ["used", "unused"]) as acts:
        net(image)
    with pytest.raises(BadLayer, match="not reached"):
        acts["unused"]


def test_bad_layer_names_suggest_close_ones(image) -> None:
    net = Model(clobbering_net())
    with pytest.raises(BadLayer, match=r"'conv' is not in the model"), capture(net, "conv"):
        pass
    torch.manual_seed(0)
    named = nn.Sequential()
    named.add_module("conv1", nn.Conv2d(3, 3, 1))
    named.add_module("relu1", nn.ReLU())
    with pytest.raises(BadLayer, match="did you mean conv1"):
        forward_until(named, image, "conv_1")
    assert no_hooks(named)


def test_hooks_are_removed_when_the_forward_raises(image) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), Stop())
    with pytest.raises(AssertionError), capture(net, ["0", "1"]):
        net(image)
    assert no_hooks(net)


def test_on_output_reads_each_output_in_its_hook_before_in_place_ops(image) -> None:
    net = clobbering_net()
    seen: dict[str, Tensor] = {}
    with capture(net, ["0", "2"], on_output=lambda name, out: seen.update({name: out.amin()})) as rec:
        out = net(image)
    assert torch.equal(out, net(image))  # nothing passed downstream was replaced
    assert seen["0"] < 0  # the conv's own minimum, read before ReLU(inplace=True) ran
    assert torch.equal(seen["0"], net[0](image).amin())
    assert "0" not in rec and no_hooks(net)
    with pytest.raises(BadArgument, match="on_output"), \
            capture(net, "0", grads=True, on_output=lambda n, o: None):
        pass
