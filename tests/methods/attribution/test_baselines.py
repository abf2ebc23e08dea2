"""One baseline vocabulary: each word is the same tensor in every method, for any channel count."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from convscope.errors import BadArgument
from convscope.methods.attribution import RISE, DeepLift, IntegratedGradients, Lime, Occlusion
from convscope.methods.attribution.baselines import gaussian_blur, make_baseline
from convscope.methods.evaluation.faithfulness import deletion, substrate
from convscope.model import Model, Preprocess

WORDS = ["black", "mean", "blur", "uniform"]


def _inputs(model: Model, batch: int = 2, size: int = 16) -> Tensor:
    gen = torch.Generator().manual_seed(0)
    return model.normalize(torch.rand(batch, model.channels, size, size, generator=gen))


def _each_method(model: Model, word: str, x: Tensor) -> dict[str, Tensor]:
    """The baseline tensor each method builds for ``word``, read through its own accessor."""
    lime = Lime(model, baseline=word, sigma=2.0)  # type: ignore[arg-type]
    return {
        "integrated_gradients": IntegratedGradients(model, baseline=word, sigma=2.0).baselines(x),  # type: ignore[arg-type]
        "deeplift": DeepLift(model, reference=word, sigma=2.0).references(x),  # type: ignore[arg-type]
        "lime": lime.hidden(x, torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.long)),
        "substrate": substrate(model, x, word, sigma=2.0),  # type: ignore[arg-type]
    }


@pytest.mark.parametrize("word", WORDS)
def test_a_word_is_the_same_tensor_in_every_method(tiny: Model, word: str) -> None:
    x = _inputs(tiny)
    expected = make_baseline(tiny, x, word, sigma=2.0)  # every method seeds with 0 by default
    for name, got in _each_method(tiny, word, x).items():
        torch.testing.assert_close(got, expected, msg=f"{name} builds another {word!r}")


def test_what_each_word_means(tiny: Model) -> None:
    x = _inputs(tiny)
    torch.testing.assert_close(tiny.denormalize(make_baseline(tiny, x, "black")), torch.zeros_like(x))
    assert torch.equal(make_baseline(tiny, x, "mean"), torch.zeros_like(x))
    torch.testing.assert_close(make_baseline(tiny, x, "blur", sigma=2.0), gaussian_blur(x, 2.0))
    blur = make_baseline(tiny, x, "blur", sigma=2.0)
    assert torch.equal(make_baseline(tiny, x, "blurred", sigma=2.0), blur)
    noise = make_baseline(tiny, x, "uniform", seed=1)
    pixels = tiny.denormalize(noise)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6 and pixels.std() > 0.2
    assert torch.equal(make_baseline(tiny, x, "uniform", seed=1), noise)
    assert not torch.equal(make_baseline(tiny, x, "uniform", seed=2), noise)


def test_zeros_is_refused_everywhere_with_the_words_that_replace_it(tiny: Model) -> None:
    x = _inputs(tiny)
    builds = [
        lambda: IntegratedGradients(tiny, baseline="zeros"),  # type: ignore[arg-type]
        lambda: Occlusion(tiny, baseline="zeros"),  # type: ignore[arg-type]
        lambda: RISE(tiny, baseline="zeros"),  # type: ignore[arg-type]
        lambda: DeepLift(tiny, reference="zeros"),  # type: ignore[arg-type]
        lambda: Lime(tiny, baseline="zeros"),  # type: ignore[arg-type]
        lambda: deletion(tiny, x, torch.rand(2, 1, 16, 16), 0, substrate_kind="zeros"),  # type: ignore[arg-type]
    ]
    for build in builds:
        with pytest.raises(BadArgument, match=r"'black'.*'mean'") as info:
            build()
        assert "\n" not in str(info.value)


def test_unknown_words_and_bad_tensors_name_the_option(tiny: Model) -> None:
    with pytest.raises(BadArgument, match=r"^reference='white': choose from"):
        DeepLift(tiny, reference="white")  # type: ignore[arg-type]
    with pytest.raises(BadArgument, match="segment_mean"):
        Occlusion(tiny, baseline="segment_mean")  # type: ignore[arg-type]
    with pytest.raises(BadArgument, match=r"^baseline tensor contains NaN"):
        RISE(tiny, baseline=torch.full((1, 3, 1, 1), float("nan")))
    with pytest.raises(BadArgument, match=r"^baseline of shape \(2, 3, 5, 5\) does not broadcast"):
        make_baseline(tiny, _inputs(tiny), torch.zeros(2, 3, 5, 5))


class Gray(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_one_channel_models_run_every_word_through_every_method() -> None:
    torch.manual_seed(0)
    model = Model(Gray().eval(), preprocess=Preprocess(input_size=(12, 12), mean=(0.5,), std=(0.25,),
                                                       channels=1), labels=["a", "b", "c"])
    x = _inputs(model, size=12)
    assert x.shape[1] == 1
    for word in WORDS:
        for name, got in _each_method(model, word, x).items():
            assert got.shape == x.shape, (word, name)
        assert IntegratedGradients(model, baseline=word, steps=4)(x, 0).shape == x.shape  # type: ignore[arg-type]
        assert Occlusion(model, baseline=word, window=4)(x, 0).shape == (2, 1, 12, 12)  # type: ignore[arg-type]
        assert RISE(model, baseline=word, masks=8, cells=3)(x, 0).shape == (2, 1, 12, 12)  # type: ignore[arg-type]
        assert DeepLift(model, reference=word)(x, 0).shape == x.shape  # type: ignore[arg-type]
    torch.testing.assert_close(model.denormalize(make_baseline(model, x, "black")), torch.zeros_like(x))


@pytest.mark.parametrize("shape", [(2, 2, 8, 8), (2, 4, 8, 8), (2, 7, 8, 8), (2, 4, 20), (2, 5)])
def test_any_channel_count_and_layout(shape: tuple[int, ...]) -> None:
    """(B, C, H, W) with 2 or 4+ channels, (B, C, L) and (B, F): no broadcast error anywhere."""
    x = torch.randn(shape)
    channels = shape[1]
    fitted = SimpleNamespace(spec=SimpleNamespace(mean=(0.5,) * channels, std=(0.25,) * channels))
    for model in (fitted, nn.Identity()):  # a model with a C-channel preprocess, and a plain network
        for word in ("black", "mean", "uniform"):
            out = make_baseline(model, x, word)
            assert out.shape == x.shape
        black = make_baseline(fitted, x, "black")
        torch.testing.assert_close(black, torch.full_like(x, -2.0))
    if len(shape) > 2:
        assert make_baseline(fitted, x, "blur", sigma=1.0).shape == x.shape
    else:  # a feature vector has no neighbours to blur with: one clear line instead
        with pytest.raises(BadArgument, match=r"^baseline='blur' needs inputs with a spatial axis"):
            make_baseline(fitted, x, "blur", sigma=1.0)
    rgb = SimpleNamespace(spec=SimpleNamespace(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)))
    if channels != 3:  # not the model's images: no pixel normalization, black is model-input 0
        torch.testing.assert_close(make_baseline(rgb, x, "black"), torch.zeros_like(x))


def test_blur_of_a_sequence_is_a_one_dimensional_gaussian() -> None:
    x = torch.zeros(1, 2, 31)
    x[0, :, 15] = 1.0
    out = gaussian_blur(x, 2.0)
    assert out.shape == x.shape
    torch.testing.assert_close(out.sum(-1), torch.ones(1, 2))
    # an image constant along its height blurs to the same rows (the kernel is separable)
    image = gaussian_blur(x[:, :, None, :].expand(1, 2, 9, 31), 2.0)
    torch.testing.assert_close(image[:, :, 4], out)
