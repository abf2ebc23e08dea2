"""Objectives: values against direct formulas, algebra, declared layers, batching, parsing."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from convscope.errors import BadArgument, BadLayer, BadTarget
from convscope.methods.features import (
    Context,
    Objective,
    channel,
    deepdream,
    direction,
    diversity,
    logit,
    neuron,
    probability,
)


def test_units_match_their_formulas(ctx: Context) -> None:
    a, logits = ctx.acts["a"], ctx.logits
    assert torch.allclose(channel("a", 2)(ctx), a[:, 2].mean((1, 2)))
    assert torch.allclose(neuron("a", 1)(ctx), a[:, 1, 2, 3])  # centre of a 4x6 map
    assert torch.allclose(neuron("a", 1, 0, 5)(ctx), a[:, 1, 0, 5])
    assert torch.allclose(deepdream("a")(ctx), a.pow(2).mean((1, 2, 3)))
    assert torch.allclose(deepdream("a", "l2")(ctx), a.flatten(1).norm(dim=1))
    one_hot = torch.eye(5)[3]
    assert torch.allclose(direction("a", one_hot)(ctx), channel("a", 3)(ctx), atol=1e-6)
    v = torch.randn(5, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(direction("a", v)(ctx), torch.einsum("c,bchw->b", v, a) / 24, atol=1e-5)
    assert torch.allclose(logit(2)(ctx), logits[:, 2])
    assert torch.allclose(logit("three")(ctx), logits[:, 3])
    assert torch.allclose(probability(1)(ctx), logits.softmax(1)[:, 1])
    assert torch.allclose(probability(1, log=True)(ctx), logits.log_softmax(1)[:, 1])


def test_batched_objectives_give_each_image_its_own_unit(ctx: Context) -> None:
    a = ctx.acts["a"]
    obj = channel("a", [4, 0, 2])
    assert obj.batch == 3 and obj.layers == ("a",)
    expected = torch.stack([a[0, 4].mean(), a[1, 0].mean(), a[2, 2].mean()])
    assert torch.allclose(obj(ctx), expected)
    assert torch.allclose(neuron("a", [1, 2, 3], 1, 1)(ctx), a[[0, 1, 2], [1, 2, 3], 1, 1])
    assert torch.allclose(logit([3, 2, 1])(ctx), ctx.logits[[0, 1, 2], [3, 2, 1]])
    with pytest.raises(BadArgument, match="3 images"):
        channel("a", [1, 2])(ctx)
    with pytest.raises(BadArgument, match="must agree"):
        channel("a", [1, 2]) + channel("b", [0, 1, 1])
    assert (channel("a", [1, 2, 3]) + 2 * deepdream("b")).batch == 3  # unbatched terms broadcast


def test_algebra_combines_values_and_declares_the_union_of_layers(ctx: Context) -> None:
    f, g, h = channel("a", 1), deepdream("b"), logit(0)
    combined = f - 0.5 * g + h / 4
    assert combined.layers == ("a", "b") and combined.reads_logits
    assert not (f + g).reads_logits
    assert torch.allclose(combined(ctx), f(ctx) - 0.5 * g(ctx) + h(ctx) / 4)
    assert torch.allclose((-f)(ctx), -f(ctx)) and torch.allclose((f * 3)(ctx), 3 * f(ctx))
    assert torch.allclose(sum([f, g, f])(ctx), 2 * f(ctx) + g(ctx))
    assert combined.name == "channel(a:1) - 0.5*deepdream(b) + 0.25*logit(0)"
    with pytest.raises(TypeError):
        f * g  # products of objectives are not defined
    with pytest.raises(TypeError):
        f + 1


def test_diversity_is_minus_the_mean_gram_cosine_to_the_others() -> None:
    same = torch.rand(1, 4, 5, 5).expand(3, -1, -1, -1)
    ctx = Context(torch.rand(3, 3, 4, 4), {"l": same})
    assert torch.allclose(diversity("l")(ctx), torch.full((3,), -1.0), atol=1e-5)
    apart = torch.zeros(2, 4, 3, 3)
    apart[0, :2], apart[1, 2:] = 1.0, 1.0  # disjoint channels: orthogonal Gram matrices
    assert torch.allclose(diversity("l")(Context(torch.rand(2, 3, 4, 4), {"l": apart})), torch.zeros(2))
    assert diversity("l")(Context(torch.rand(1, 3, 4, 4), {"l": same[:1]})).item() == 0
    x = torch.rand(3, 4, 5, 5, requires_grad=True)  # differentiable, as the optimizer needs
    (g,) = torch.autograd.grad(diversity("l")(Context(torch.rand(3, 3, 4, 4), {"l": x})).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_reading_an_undeclared_layer_or_logits_is_an_error(ctx: Context) -> None:
    class Sneaky(Objective):
        layers = ("a",)

        def value(self, c: Context) -> Tensor:
            return c.act("b").mean((1, 2, 3))

    with pytest.raises(BadLayer, match="declare"):
        Sneaky()(ctx)
    with pytest.raises(BadArgument, match="reads_logits"):
        logit(1)(Context(ctx.images, ctx.acts, None))


def test_errors_name_the_problem(ctx: Context) -> None:
    with pytest.raises(BadArgument, match="out of range"):
        channel("a", 9)(ctx)
    with pytest.raises(BadArgument, match="outside"):
        neuron("a", 0, 7, 0)(ctx)
    with pytest.raises(BadArgument, match="3 values"):
        direction("a", [1.0, 2.0, 3.0])(ctx)
    with pytest.raises(BadTarget, match="did you mean"):
        logit("thre")(ctx)

    class Wrong(Objective):
        def value(self, c: Context) -> Tensor:
            return c.images.mean()

    with pytest.raises(BadArgument, match=r"shape \(3,\)"):
        Wrong()(ctx)
