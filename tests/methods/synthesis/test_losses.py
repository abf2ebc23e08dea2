"""Feature losses: Gram matrices (values, gradients), per-image losses, the feature extractor."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.errors import BadArgument, BadLayer
from convscope.methods.synthesis import (
    FeatureExtractor,
    content_loss,
    default_style_layers,
    feature_distance,
    gram_matrix,
    gram_targets,
    imagenet_normalize,
    style_loss,
)
from convscope.model import Model


def test_gram_matrix_matches_its_definition_and_is_symmetric() -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 5, 4, 3, generator=g)
    gram = gram_matrix(f)
    expected = torch.einsum("bchw,bdhw->bcd", f, f) / (5 * 4 * 3)
    assert gram.shape == (2, 5, 5)
    torch.testing.assert_close(gram, expected)
    torch.testing.assert_close(gram, gram.transpose(1, 2))
    assert (torch.linalg.eigvalsh(gram.double()) > -1e-6).all()  # positive semi-definite


def test_gram_matrix_gradient_matches_finite_differences() -> None:
    f = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram_matrix, (f,))


def test_style_loss_gradient_matches_finite_differences() -> None:
    f = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    target = {"a": torch.randn(3, 3, dtype=torch.float64)}
    assert torch.autograd.gradcheck(lambda x: style_loss({"a": x}, target), (f,))


def test_losses_are_per_image_and_zero_at_the_target() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 4, 5, 5, generator=g)
    c = content_loss(a, a[1])
    assert c.shape == (3,) and c[1] == 0 and (c[[0, 2]] > 0).all()
    grams = gram_targets({"x": b})
    assert grams["x"].shape == (3, 4, 4)
    s = style_loss({"x": b, "y": a}, grams)
    assert s.shape == (3,) and torch.allclose(s, torch.zeros(3))
    # each image's loss depends on that image only, and layer weights scale their terms
    both = {"x": torch.cat([a[:1], b[1:]])}
    assert style_loss(both, grams)[1:].abs().max() == 0 and style_loss(both, grams)[0] > 0
    w = style_loss(both, grams, {"x": 3.0})
    torch.testing.assert_close(w, 3 * style_loss(both, grams))
    d = feature_distance(a, b)
    torch.testing.assert_close(d, (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1))
    assert feature_distance(a, a).abs().max() == 0


def test_shape_mismatches_are_clear_errors() -> None:
    with pytest.raises(BadArgument, match="B, C, H, W"):
        gram_matrix(torch.zeros(3, 4, 5))
    with pytest.raises(BadArgument, match="same layer"):
        content_loss(torch.zeros(1, 3, 4, 4), torch.zeros(3, 5, 5))
    with pytest.raises(BadLayer, match="no features"):
        style_loss({}, {"a": torch.zeros(3, 3)})


def test_extractor_hooks_only_its_layers_stops_early_and_keeps_the_model(lite0: Model) -> None:
    calls: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: calls.append(n))
             for n, m in lite0.net.named_modules() if n in ("_blocks.3", "_blocks.4", "_fc")]
    try:
        extract = FeatureExtractor(lite0, ["_blocks.3", "_relu_stem"])
        x = torch.rand(2, 3, 32, 32, requires_grad=True)
        feats = extract(x)
    finally:
        for h in hooks:
            h.remove()
    assert calls == ["_blocks.3"]  # stopped after the deepest requested layer
    assert set(feats) == {"_blocks.3", "_relu_stem"} and feats["_blocks.3"].shape[:2] == (2, 40)
    (g,) = torch.autograd.grad(feats["_blocks.3"].sum(), x)
    assert g.abs().sum() > 0
    assert all(p.grad is None and p.requires_grad for p in lite0.parameters())
    assert not any(m._forward_hooks for m in lite0.modules())
    # the Model's own normalization is applied: same features as a plain module fed normalized input
    plain = FeatureExtractor(lite0.net, ["_relu_stem"], normalize=lite0.normalize)
    torch.testing.assert_close(plain(x.detach())["_relu_stem"], feats["_relu_stem"].detach())


def test_default_layers_and_plain_modules(lite0: Model) -> None:
    layers = default_style_layers(lite0)
    assert layers.content == "_blocks.6._relu0" and len(layers.style) == 5
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(BadArgument, match="explicitly"):
        default_style_layers(net)
    feats = FeatureExtractor(net, "1", normalize=imagenet_normalize)(torch.rand(1, 3, 8, 8))
    assert feats["1"].shape == (1, 4, 6, 6) and (feats["1"] >= 0).all()
    with pytest.raises(BadLayer):
        FeatureExtractor(net, ["nope"])
