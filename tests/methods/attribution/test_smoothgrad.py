"""SmoothGrad wraps any method: seeded, chunk-independent, exact at zero noise, target fixed."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from convscope.data import load_image
from convscope.errors import BadArgument
from convscope.methods.attribution import (
    GradientXInput,
    IntegratedGradients,
    LayerGuidedBackprop,
    Saliency,
    SmoothGrad,
)
from convscope.methods.registry import build_method
from convscope.model import Model


def image(batch: int = 2, seed: int = 1) -> Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_seeded_and_reproducible(tiny: Model) -> None:
    x = image()
    first = SmoothGrad(tiny, samples=6, seed=3)(x, 1)
    assert first.shape == (2, 1, 16, 16)
    torch.testing.assert_close(SmoothGrad(tiny, samples=6, seed=3)(x, 1), first, rtol=0, atol=0)
    assert not torch.allclose(SmoothGrad(tiny, samples=6, seed=4)(x, 1), first)


def test_chunking_does_not_change_the_result(tiny: Model) -> None:
    x = image(3)
    results = [SmoothGrad(tiny, samples=5, batch_size=b)(x, 2) for b in (1, 4, 100)]
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("name", "options", "cls"), [
    ("saliency", {}, Saliency),
    ("gradient_x_input", {}, GradientXInput),
    ("integrated_gradients", {"steps": 6, "baseline": "blurred", "sigma": 2.0}, IntegratedGradients),
])
def test_zero_noise_equals_the_wrapped_method(tiny: Model, name: str, options: dict, cls: type) -> None:
    x = image()
    smooth = SmoothGrad(tiny, base=name, noise=0.0, samples=3, **options)(x, [0, 3])
    torch.testing.assert_close(smooth, cls(tiny, **options)(x, [0, 3]))
    squared = SmoothGrad(tiny, base=name, noise=0.0, samples=3, squared=True, **options)(x, [0, 3])
    torch.testing.assert_close(squared, cls(tiny, **options)(x, [0, 3]).square())


def test_target_is_read_on_the_clean_input(tiny: Model) -> None:
    x = image(4)
    sg = SmoothGrad(tiny, samples=8, noise=1.0, seed=0)
    with torch.no_grad():
        top = tiny(x).argmax(1)
        rows = torch.arange(4 * 8)
        noisy_top = tiny(sg.noisy_copies(x, torch.Generator().manual_seed(0), rows)).argmax(1)
    assert (noisy_top != top.repeat_interleave(8)).any()  # "top1" of noisy copies would differ
    torch.testing.assert_close(sg(x, "top1"), sg(x, top))


def test_wraps_instances_and_layer_methods(tiny: Model) -> None:
    x = image()
    instance = IntegratedGradients(tiny, steps=4)
    torch.testing.assert_close(SmoothGrad(tiny, base=instance, samples=2)(x, 1),
                               SmoothGrad(tiny, base="integrated_gradients", steps=4, samples=2)(x, 1))
    channel = LayerGuidedBackprop(tiny, layer="relu1")
    noiseless = SmoothGrad(tiny, base=channel, noise=0.0, samples=2)
    torch.testing.assert_close(noiseless(x, "top1"), channel(x, "top1"))  # top1 = a channel here
    assert SmoothGrad(tiny, base=channel, samples=2)(x, 5).shape == x.shape


def test_built_by_name_with_options(tiny: Model) -> None:
    method = build_method("smoothgrad", tiny, samples=2, noise=0.1, seed=1)
    assert isinstance(method, SmoothGrad) and isinstance(method.wrapped, Saliency)
    assert method(image(), 0).shape == (2, 1, 16, 16)


@pytest.mark.parametrize(("options", "message"), [
    ({"noise": -0.1}, "noise=-0.1"),
    ({"samples": 0}, "samples=0"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"base": "salency"}, "did you mean saliency"),
    ({"base": "smoothgrad"}, "cannot wrap itself"),
    ({"base": "saliency", "steps": 4}, "has no option 'steps'"),
    ({"base": 3}, "base=3"),
])
def test_bad_options(tiny: Model, options: dict, message: str) -> None:
    with pytest.raises(BadArgument, match=message):
        SmoothGrad(tiny, **options)


def test_instance_of_another_model_or_with_options_is_refused(tiny: Model, lite0: Model) -> None:
    with pytest.raises(BadArgument, match="another model"):
        SmoothGrad(tiny, base=Saliency(lite0))
    with pytest.raises(BadArgument, match="set them when building"):
        SmoothGrad(tiny, base=Saliency(tiny), reduce="mean")


def test_smoothgrad_on_the_embedded_model(lite0: Model) -> None:
    x = lite0.preprocess(load_image("sample:cat"))
    smooth = SmoothGrad(lite0, samples=2, batch_size=2)(x, 285)
    plain = Saliency(lite0)(x, 285)
    assert smooth.shape == plain.shape == (1, 1, 224, 224)
    assert torch.isfinite(smooth).all() and not torch.allclose(smooth, plain)
    assert all(p.grad is None for p in lite0.parameters())


def test_options_reach_the_wrapped_method_by_name_and_signs_follow(tiny: Model) -> None:
    from convscope.tasks.explain import explain

    x = tiny.preprocess(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    result = explain(tiny, x, "smoothgrad", target=1, base="integrated_gradients", steps=4,
                     samples=3)
    assert result.signed and result.values.shape == (1, 3, 16, 16)
    squared = explain(tiny, x, "smoothgrad", target=1, base="gradient_x_input", samples=3,
                      squared=True)
    assert not squared.signed
    with pytest.raises(BadArgument, match="no option 'stepz'"):
        explain(tiny, x, "smoothgrad", base="integrated_gradients", stepz=4)
