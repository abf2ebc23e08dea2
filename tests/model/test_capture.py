"""capture() and every reader built on it: activations, their gradients, in-place clobbering,
early stop, bad names, modules that run twice (``name:i``) and ``name+relu``."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from convscope.errors import BadArgument, BadLayer
from convscope.methods.features.activations import activation_mask, feature_maps
from convscope.model import Model, Preprocess, capture, forward_until, frozen
from tests.model.styled_nets import DenseStyle, ResStyle, SharedAcross


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


def test_forward_until_stops_right_after_layers_known_to_run_once(image) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), Tail())
    first = forward_until(net, image, ["0.1", "0.0"])  # nothing known yet: the whole forward runs
    assert net[1].runs == 1 and set(first) == {"0.0", "0.1"}
    again = forward_until(net, image, ["0.1", "0.0"])  # each ran once: stop after the deepest
    assert net[1].runs == 1 and no_hooks(net)
    torch.testing.assert_close(again["0.1"], net[0][0](image).relu())
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert forward_until(net, image, "0.0", grads=True)["0.0"].requires_grad
    assert net[1].runs == 1
    net[0][1] = nn.ReLU()  # a replaced module is not known any more
    forward_until(net, image, "0.1")
    assert net[1].runs == 2
    assert forward_until(net, image, "0.0:0")["0.0:0"].shape == (2, 4, 6, 6)  # a call: no doubt
    assert net[1].runs == 2


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


# --- modules that run several times, and the output after the model's own functional ReLU ---

AMBIGUOUS = r"'layer1\.0\.relu' runs 2 times.*'layer1\.0\.relu:0', 'layer1\.0\.relu:1'"


def _read_capture(net: nn.Module, x: Tensor, name: str) -> Tensor:
    with capture(net, name) as record:
        net(x)
        return record[name]


def _capture_without_reading(net: nn.Module, x: Tensor, name: str) -> None:
    with capture(net, name):
        net(x)


def _scan(net: nn.Module, x: Tensor, name: str) -> Tensor:
    from convscope.methods.dataset import scan

    return scan(net, x, name, k=1).embeddings[name]


READERS = {
    "capture": _read_capture,
    "capture, not read": _capture_without_reading,
    "forward_until": lambda net, x, name: forward_until(net, x, name)[name],
    "feature_maps": lambda net, x, name: feature_maps(net, x, name).maps,
    "activation_mask": lambda net, x, name: activation_mask(net, x, name, 0).raw,
    "scan": _scan,
}


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_refuses_a_bare_name_that_runs_twice(reader: str, image: Tensor) -> None:
    net = ResStyle()
    with pytest.raises(BadLayer, match=AMBIGUOUS):
        READERS[reader](net, image, "layer1.0.relu")
    assert no_hooks(net)


def test_every_reader_gives_the_call_its_index_names(image: Tensor) -> None:
    net = ResStyle()
    block = net.layer1[0]
    with torch.no_grad():
        first = block.bn1(block.conv1(net.conv1(image))).relu()
        second = block(net.conv1(image))  # the block output is the second call's output
    for reader in ("capture", "forward_until", "feature_maps"):
        torch.testing.assert_close(READERS[reader](net, image, "layer1.0.relu:0"), first)
        torch.testing.assert_close(READERS[reader](net, image, "layer1.0.relu:1"), second)
    torch.testing.assert_close(activation_mask(net, image, "layer1.0.relu:1", 2).raw,
                               second[:, 2:3])
    torch.testing.assert_close(_scan(net, image, "layer1.0.relu:0"), first.mean((2, 3)))
    with pytest.raises(BadLayer, match=r"'layer1\.0\.relu:2' was not reached.*ran 2 time"):
        _read_capture(net, image, "layer1.0.relu:2")
    assert "layer1.0.relu:2" not in forward_until(net, image, "layer1.0.relu:2")
    assert no_hooks(net)


def test_capture_finds_reuse_in_the_real_forward_without_a_dry_pass(image: Tensor) -> None:
    net = ResStyle()
    forwards = []
    handle = net.register_forward_pre_hook(lambda m, i: forwards.append(1))
    try:
        with pytest.raises(BadLayer, match=AMBIGUOUS), capture(net, "layer1.0.relu") as record:
            net(image)
            record["layer1.0.relu"]
        with capture(net, "layer1.0.conv1") as record:  # calls are counted per forward pass
            net(image)
            net(image)
            assert record["layer1.0.conv1"].shape == (2, 4, 8, 8)
    finally:
        handle.remove()
    assert len(forwards) == 3


def test_module_shared_by_two_containers_is_refused_by_forward_until(image: Tensor) -> None:
    """Its first parent returns before its second call: only the whole forward tells."""
    net = SharedAcross()
    for _ in range(2):  # also once its two calls are known
        with pytest.raises(BadLayer, match=r"'a\.1' runs 2 times"):
            forward_until(net, image, "a.1")
    torch.testing.assert_close(forward_until(net, image, "a.1:1")["a.1:1"],
                               net.b[0](net.a(image)).relu())


def test_after_relu_is_what_the_head_reads_for_every_reader(image: Tensor) -> None:
    net = DenseStyle()
    with torch.no_grad():
        pre = net.features(image)
    expected = pre.relu()
    assert (pre < 0).any()
    for reader in ("capture", "forward_until", "feature_maps"):
        torch.testing.assert_close(READERS[reader](net, image, "features+relu"), expected)
    fm = feature_maps(net, image, "auto")
    assert fm.layer == "features+relu"
    torch.testing.assert_close(fm.maps, expected)
    torch.testing.assert_close(_read_capture(net, image, "features"), pre)  # the module's own
    torch.testing.assert_close(_scan(net, image, "features+relu"), expected.mean((2, 3)))


def test_after_relu_gradients_flow_through_the_record(image: Tensor) -> None:
    net = DenseStyle()
    expected_out = net(image)
    with frozen(net), capture(net, "features+relu", grads=True) as record:
        out = net(image)
        grads = record.gradients(out[:, 1])
        acts = record["features+relu"]
    torch.testing.assert_close(out, expected_out)  # the forward itself is unchanged
    # score = w . mean(relu(f)): d score / d relu(f) = w / hw where the model's ReLU passed
    w = net.classifier.weight[1].detach()[None, :, None, None] / acts[0, 0].numel()
    torch.testing.assert_close(grads["features+relu"], w * (acts > 0))
    assert all(p.grad is None for p in net.parameters()) and no_hooks(net)
