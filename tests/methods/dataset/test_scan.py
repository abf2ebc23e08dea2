"""The streaming scan equals a brute-force computation, exactly, and leaves the model unharmed."""

from __future__ import annotations

import copy

import pytest
import torch

from convscope.errors import BadArgument, BadLayer
from convscope.methods.dataset import Scanner, scan
from convscope.methods.dataset.topk import EMPTY
from convscope.model import capture


def brute_force(model, images: torch.Tensor, layer: str, k: int):
    """Per channel: the k best (value, index, y, x), ranked by (value desc, index asc)."""
    with torch.no_grad(), capture(model, [layer]) as rec:
        model(images)
    act = rec[layer]
    n, c, _, w = act.shape
    flat = act.flatten(2)
    out = []
    for ch in range(c):
        cands = []
        for i in range(n):
            row = flat[i, ch].tolist()
            best = max(row)
            pos = row.index(best)  # first maximal position
            cands.append((best, i, pos // w, pos % w))
        out.append(sorted(cands, key=lambda t: (-t[0], t[1]))[:k])
    return out, act.mean((2, 3))


@pytest.mark.parametrize("batch", [3, 40])
def test_scan_equals_brute_force_with_ties(fx, batch: int) -> None:
    model, images = fx.int_model(), fx.int_images(40)
    result = scan(model, images, ["relu1", "conv2"], k=6, batch_size=batch)
    for layer in ("relu1", "conv2"):
        expected, means = brute_force(model, images, layer, 6)
        t = result.topk[layer]
        got = [list(zip(v, i, y, x)) for v, i, y, x in zip(t.values.tolist(), t.indices.tolist(),
                                                          t.ys.tolist(), t.xs.tolist())]
        assert got == expected
        assert torch.equal(result.embeddings[layer], means)
    ties = sum(len({v for v, *_ in ch}) < len(ch) for ch in expected)
    assert ties > 0, "the fixture must produce ties for this test to mean something"
    logits = model(images)
    assert torch.equal(result.predictions, logits.argmax(1))
    assert torch.allclose(result.probabilities, logits.softmax(1).max(1).values)


def test_model_unharmed_and_non_spatial_layer(fx) -> None:
    model = fx.int_model()
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    before = copy.deepcopy(model.state_dict())
    result = scan(model, fx.int_images(9), ["fc"], k=3, batch_size=4)
    assert result.topk["fc"].values.shape == (3, 3) and (result.topk["fc"].indices != EMPTY).all()
    assert torch.equal(result.embeddings["fc"], model.net(fx.int_images(9)).detach())
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())


def test_bad_arguments(fx) -> None:
    model = fx.int_model()
    with pytest.raises(BadArgument):
        Scanner(model, [], k=3)
    with pytest.raises(BadArgument):
        Scanner(model, "conv1", k=0)
    with pytest.raises(BadLayer):
        Scanner(model, "nope")
    with pytest.raises(BadArgument, match="batch_size=0"):  # 0 is refused, not the default
        scan(model, fx.int_images(4), "conv1", batch_size=0)


def test_inplace_relu_after_captured_conv_reads_pre_activations() -> None:
    """ReLU(inplace=True) after the scanned conv would overwrite it; the scan must still see the
    conv's own (partly negative) outputs."""
    from torch import nn

    from convscope.model import Model, Preprocess

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 2)).eval()
    model = Model(net, preprocess=Preprocess((8, 8)))
    x = torch.randn(6, 3, 8, 8)
    result = scan(model, x, "0", k=6, batch_size=3)
    expected = net[0](x).detach()
    assert torch.allclose(result.embeddings["0"], expected.mean((2, 3)), atol=1e-6)
    assert (result.embeddings["0"] < 0).any()
    assert torch.allclose(result.topk["0"].values, expected.amax((2, 3)).t().sort(1, descending=True)
                          .values, atol=1e-6)


def test_hooked_conv_before_batchnorm_keeps_its_own_output() -> None:
    """The scan runs on a BN-folded copy; a hooked conv whose BN follows must not be folded
    (its own, unnormalized output is recorded), while a hooked block ending in the BN folds."""
    from convscope.model import load_model
    from convscope.model.fold import fold_info

    model = load_model("digits_cnn")
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad(), capture(model, ["block1.0", "block1"]) as rec:
        model(x)
    conv, block = rec["block1.0"], rec["block1"]
    scanner = Scanner(model, ["block1.0", "block1"], k=2)
    info = fold_info(scanner.net)  # names in the copy of the Model wrapper: "net." + layer
    assert info is not None and ("net.block1.0", "net.block1.1") not in info.pairs
    assert ("net.block2.0", "net.block2.1") in info.pairs
    result = scanner.step(x, torch.arange(5))
    assert torch.allclose(result.embeddings["block1.0"], conv.mean((2, 3)), atol=1e-5)
    assert torch.allclose(result.embeddings["block1"], block.mean((2, 3)), atol=1e-5)
    assert not torch.allclose(conv.mean((2, 3)), block.mean((2, 3)), atol=1e-2)

    block_only = Scanner(model, ["block1"], k=2)
    assert ("net.block1.0", "net.block1.1") in fold_info(block_only.net).pairs  # type: ignore[union-attr]


def test_layer_that_runs_twice_is_refused() -> None:
    from torch import nn

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(self.conv(x)).mean((2, 3)))

    torch.manual_seed(0)
    net, x = Twice().eval(), torch.randn(2, 3, 6, 6)
    with pytest.raises(BadLayer, match=r"runs 2 times.*'conv:0', 'conv:1'"):
        scan(net, x, "conv", k=1)
    result = scan(net, x, ["conv:0", "conv:1"], k=1)  # each call by its own name
    with torch.no_grad():
        first = net.conv(x)
        second = net.conv(first)
    torch.testing.assert_close(result.embeddings["conv:0"], first.mean((2, 3)))
    torch.testing.assert_close(result.embeddings["conv:1"], second.mean((2, 3)))


def test_default_scan_batch_grows_for_small_inputs_on_cpu() -> None:
    from convscope.methods.dataset import scan_batch_size

    assert scan_batch_size("cpu") == scan_batch_size("cpu", (224, 224)) == 16
    assert scan_batch_size("cpu", (512, 512)) == 16
    assert scan_batch_size("cpu", (28, 28)) == 128 and scan_batch_size("cpu", (112, 112)) == 64
    assert scan_batch_size("cuda", (28, 28)) == 128


def test_a_model_that_refuses_to_be_copied_is_scanned_in_place_and_unharmed(fx) -> None:
    """No inference copy (deepcopy raises): the scan hooks the model itself, under guard."""
    from torch import nn

    from convscope.model import FastForward

    class NoCopy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = fx.int_model().net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

        def __deepcopy__(self, memo: dict) -> NoCopy:
            raise TypeError("this module cannot be copied")

    model = NoCopy().train()
    images = fx.int_images(10)
    scanner = Scanner(model, ["inner.conv2"], k=3)
    assert scanner.net is model
    result = scanner.step(images, torch.arange(10))
    expected = model.inner.conv2(model.inner.relu1(model.inner.conv1(images))).detach()
    assert torch.equal(result.embeddings["inner.conv2"], expected.mean((2, 3)))
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())
    fast = FastForward(model)
    assert fast.net is model and torch.equal(fast.scores(images, 0), model.eval()(images)[:, 0])
